#pragma once
// Damaging files on purpose, for the integrity tests (checkpoint_test, integrity_e2e_test).
#include <cstdint>
#include <fstream>
#include <string>

#include "data/h5.h"

namespace dtrain::test {

// Where dataset `dataset` of the HDF5 file `path` starts on disk (a contiguous dataset); -1 when
// HDF5 cannot say.
inline int64_t dataset_file_offset(const std::string& path, const std::string& dataset) {
  auto guard = h5::lock();
  const h5::File f = h5::File::open(path);
  const haddr_t offset = H5Dget_offset(f.dataset(dataset).id());
  return offset == HADDR_UNDEF ? -1 : static_cast<int64_t>(offset);
}

// Overwrites `count` bytes at `offset` of `path` with their complements (so every byte changes);
// false when the file could not be read or written there.
inline bool flip_bytes(const std::string& path, int64_t offset, int64_t count) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes(static_cast<size_t>(count), '\0');
  f.seekg(offset);
  f.read(bytes.data(), count);
  for (char& c : bytes) c = static_cast<char>(~c);
  f.seekp(offset);
  f.write(bytes.data(), count);
  return f.good();
}

}  // namespace dtrain::test
