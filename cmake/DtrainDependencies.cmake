# Host dependencies, all from Debian packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS C)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(ZLIB REQUIRED)
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(DTRAIN_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread REQUIRED)
find_package(spdlog REQUIRED)
# ONNX export and the ONNX engine (core/io): Debian's libonnx-dev ships a CMake package whose
# targets (onnx, onnx_proto) carry ONNX_NAMESPACE=onnx and ONNX_ML=1 and link protobuf::libprotobuf.
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED CONFIG)

add_library(dtrain_cblas INTERFACE)
target_include_directories(dtrain_cblas SYSTEM INTERFACE ${DTRAIN_CBLAS_INCLUDE_DIR})
target_link_libraries(dtrain_cblas INTERFACE ${BLAS_LIBRARIES})
