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
# Checkpoint checksums: xxHash's XXH3, compiled in from the header (core/hash.cpp), nothing to link.
find_path(DTRAIN_XXHASH_INCLUDE_DIR xxhash.h)
if(NOT DTRAIN_XXHASH_INCLUDE_DIR)
  message(FATAL_ERROR "dtrain needs xxHash's header (<xxhash.h>), which was not found: install Debian's libxxhash-dev "
                      "(scripts/install-deps.sh) or set DTRAIN_XXHASH_INCLUDE_DIR")
endif()
# ONNX export and the ONNX engine (core/io): Debian's libonnx-dev ships a CMake package whose
# targets (onnx, onnx_proto) carry ONNX_NAMESPACE=onnx and ONNX_ML=1 and link protobuf::libprotobuf.
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED CONFIG)

# MPI's C API only: keep Open MPI's deprecated C++ bindings out of C++ translation units.
add_library(dtrain_mpi INTERFACE)
target_link_libraries(dtrain_mpi INTERFACE MPI::MPI_C)
target_compile_definitions(dtrain_mpi INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)

add_library(dtrain_cblas INTERFACE)
target_include_directories(dtrain_cblas SYSTEM INTERFACE ${DTRAIN_CBLAS_INCLUDE_DIR})
target_link_libraries(dtrain_cblas INTERFACE ${BLAS_LIBRARIES})

# dtrain-serve (serve/): cpp-httplib and nlohmann-json from Debian. Debian builds cpp-httplib as a
# shared library (libcpp-httplib.so) whose header declares classes whose layout depends on the
# CPPHTTPLIB_*_SUPPORT macros it was built with, so those come from its pkg-config file.
find_path(DTRAIN_HTTPLIB_INCLUDE_DIR httplib.h)
if(NOT DTRAIN_HTTPLIB_INCLUDE_DIR)
  message(FATAL_ERROR "dtrain-serve needs cpp-httplib (<httplib.h>), which was not found: install Debian's "
                      "libcpp-httplib-dev (scripts/install-deps.sh) or set DTRAIN_HTTPLIB_INCLUDE_DIR")
endif()
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(DTRAIN_HTTPLIB_PC QUIET cpp-httplib)
endif()
set(DTRAIN_HTTPLIB_DEFINITIONS "")
set(DTRAIN_HTTPLIB_LIBRARIES "")
if(DTRAIN_HTTPLIB_PC_FOUND)
  foreach(flag IN LISTS DTRAIN_HTTPLIB_PC_CFLAGS_OTHER)
    if(flag MATCHES "^-D(.+)$")
      list(APPEND DTRAIN_HTTPLIB_DEFINITIONS ${CMAKE_MATCH_1})
    endif()
  endforeach()
  find_library(DTRAIN_HTTPLIB_LIBRARY NAMES cpp-httplib HINTS ${DTRAIN_HTTPLIB_PC_LIBRARY_DIRS})
  if(NOT DTRAIN_HTTPLIB_LIBRARY)
    message(FATAL_ERROR "cpp-httplib's pkg-config file names libcpp-httplib, which was not found: reinstall libcpp-httplib-dev")
  endif()
  set(DTRAIN_HTTPLIB_LIBRARIES ${DTRAIN_HTTPLIB_LIBRARY})
endif()
find_package(nlohmann_json 3 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "dtrain-serve needs nlohmann-json 3 (<nlohmann/json.hpp>), which was not found: install Debian's "
                      "nlohmann-json3-dev (scripts/install-deps.sh)")
endif()
