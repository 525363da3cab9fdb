// Every collective of the mpi backend on 2 and 4 ranks: empty, 1 element, odd sizes, every dtype.
#include <gtest/gtest.h>

#include "comm/communicator.h"
#include "tests/comm/mpi_comm.h"

namespace dtrain {
namespace {

using testing::comm;

const int64_t kSizes[] = {0, 1, 7, 1000, 65537};

TEST(MpiCommunicator, ReportsRankAndWorld) {
  EXPECT_GE(comm().size(), 1);
  EXPECT_LT(comm().rank(), comm().size());
  EXPECT_LT(comm().local_rank(), comm().local_size());
  EXPECT_EQ(comm().backend(), "mpi");
  const auto lines = describe_world(comm(), false);
  ASSERT_EQ(static_cast<int>(lines.size()), comm().size());
  EXPECT_NE(lines[comm().rank()].find("rank " + std::to_string(comm().rank()) + " on "), std::string::npos);
}

TEST(MpiCommunicator, AllreduceSumAverageMaxF32) {
  const int r = comm().rank(), w = comm().size();
  for (int64_t n : kSizes) {
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(r + 1) * static_cast<float>(i % 13 + 1);
    Tensor sum = Tensor::from_vector(v, Shape{n}), avg = sum.clone(), mx = sum.clone();
    Work a = comm().allreduce(sum, ReduceOp::sum);
    Work b = comm().allreduce(avg, ReduceOp::average);
    Work c = comm().allreduce(mx, ReduceOp::max);
    ASSERT_TRUE(a.wait(30) && b.wait(30) && c.wait(30));
    EXPECT_TRUE(a.is_done());
    const float ranks_sum = w * (w + 1) / 2.0f;
    const auto s = sum.to_vector<float>(), m = avg.to_vector<float>(), x = mx.to_vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      const float base = static_cast<float>(i % 13 + 1);
      ASSERT_FLOAT_EQ(s[i], ranks_sum * base) << "n=" << n << " i=" << i;
      ASSERT_FLOAT_EQ(m[i], ranks_sum * base / w) << "n=" << n << " i=" << i;
      ASSERT_FLOAT_EQ(x[i], w * base) << "n=" << n << " i=" << i;
    }
  }
}

TEST(MpiCommunicator, AllreduceIntegersAndBf16) {
  const int r = comm().rank(), w = comm().size();
  for (int64_t n : kSizes) {
    Tensor i32 = Tensor::from_vector(std::vector<int32_t>(n, r + 1), Shape{n});
    Tensor i64 = Tensor::from_vector(std::vector<int64_t>(n, int64_t{1} << (33 + r)), Shape{n});
    Tensor b16 = Tensor::from_vector(std::vector<bf16>(n, to_bf16(static_cast<float>(r + 1))), Shape{n});
    Tensor b16max = b16.clone();
    comm().allreduce(i32, ReduceOp::sum).wait();
    comm().allreduce(i64, ReduceOp::max).wait();
    comm().allreduce(b16, ReduceOp::sum).wait();
    comm().allreduce(b16max, ReduceOp::max).wait();
    for (int32_t v : i32.to_vector<int32_t>()) ASSERT_EQ(v, w * (w + 1) / 2);
    for (int64_t v : i64.to_vector<int64_t>()) ASSERT_EQ(v, int64_t{1} << (33 + w - 1));
    for (bf16 v : b16.to_vector<bf16>()) ASSERT_EQ(from_bf16(v), w * (w + 1) / 2.0f);
    for (bf16 v : b16max.to_vector<bf16>()) ASSERT_EQ(from_bf16(v), static_cast<float>(w));
  }
}

TEST(MpiCommunicator, AverageOfIntegersIsRejected) {
  Tensor t = Tensor::zeros(Shape{3}, DType::i32);
  EXPECT_THROW(comm().allreduce(t, ReduceOp::average), Error);
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  const int w = comm().size();
  for (int root = 0; root < w; ++root)
    for (int64_t n : kSizes) {
      std::vector<float> v(n, static_cast<float>(comm().rank()));
      Tensor t = Tensor::from_vector(v, Shape{n});
      ASSERT_TRUE(comm().broadcast(t, root).wait(30));
      for (float x : t.to_vector<float>()) ASSERT_EQ(x, static_cast<float>(root));
    }
  Tensor t = Tensor::zeros(Shape{2});
  EXPECT_THROW(comm().broadcast(t, w), Error);
}

TEST(MpiCommunicator, AllgatherInRankOrder) {
  const int r = comm().rank(), w = comm().size();
  for (int64_t n : kSizes) {
    std::vector<int64_t> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = r * 1000003 + i;
    Tensor in = Tensor::from_vector(v, Shape{n});
    Tensor out = Tensor::zeros(Shape{n * w}, DType::i64);
    ASSERT_TRUE(comm().allgather(in, out).wait(30));
    const auto all = out.to_vector<int64_t>();
    for (int q = 0; q < w; ++q)
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(all[q * n + i], q * 1000003 + i);
  }
  Tensor in = Tensor::zeros(Shape{3}), bad = Tensor::zeros(Shape{3 * w + 1});
  EXPECT_THROW(comm().allgather(in, bad), Error);
}

TEST(MpiCommunicator, ReduceScatterAndAllgatherPiecesOfUnevenSizes) {
  const int r = comm().rank(), w = comm().size();
  for (int64_t n : kSizes) {
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>((r + 1) * (i % 97));  // differs per rank
    Tensor t = Tensor::from_vector(v, Shape{n});
    ASSERT_TRUE(comm().reduce_scatter(t, ReduceOp::sum).wait(30));
    const auto [begin, end] = piece_of(n, r, w);
    const float ranks_sum = static_cast<float>(w * (w + 1) / 2);
    const auto got = t.to_vector<float>();
    for (int64_t i = begin; i < end; ++i) ASSERT_EQ(got[i], ranks_sum * static_cast<float>(i % 97)) << "n " << n;
    // Each rank then fills only its piece; allgather_pieces gives everyone all of them.
    Tensor g = Tensor::zeros(Shape{n});
    float* gp = g.data<float>();
    for (int64_t i = begin; i < end; ++i) gp[i] = static_cast<float>(i) + 0.5f;
    ASSERT_TRUE(comm().allgather_pieces(g).wait(30));
    const auto all = g.to_vector<float>();
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(all[i], static_cast<float>(i) + 0.5f) << "n " << n;
  }
  Tensor avg = Tensor::full(Shape{10}, static_cast<float>(r));
  ASSERT_TRUE(comm().reduce_scatter(avg, ReduceOp::average).wait(30));
  const auto [b, e] = piece_of(10, r, w);
  for (int64_t i = b; i < e; ++i) EXPECT_FLOAT_EQ(avg.to_vector<float>()[i], (w - 1) / 2.0f);
  EXPECT_EQ(piece_of(10, 0, 4), std::make_pair(int64_t{0}, int64_t{2}));
  EXPECT_EQ(piece_of(10, 3, 4), std::make_pair(int64_t{7}, int64_t{10}));
}

TEST(MpiCommunicator, ManyOutstandingOpsCompleteInOrder) {
  std::vector<Tensor> ts;
  std::vector<Work> works;
  for (int k = 0; k < 50; ++k) {
    ts.push_back(Tensor::full(Shape{k + 1}, static_cast<float>(k)));
    works.push_back(comm().allreduce(ts.back(), ReduceOp::max));
  }
  ASSERT_TRUE(comm().barrier().wait(30));
  for (int k = 0; k < 50; ++k) {
    EXPECT_TRUE(works[k].is_done());
    EXPECT_EQ(ts[k].to_vector<float>()[k], static_cast<float>(k));
  }
}

TEST(MpiCommunicator, RejectsNonCpuOrUndefinedBuffers) {
  EXPECT_THROW(comm().allreduce(Tensor(), ReduceOp::sum), Error);
}

}  // namespace
}  // namespace dtrain
