#!/usr/bin/env bash
# dtrain-serve runs exported models only: it must not be linked with MPI, HDF5, NCCL or dtrain's
# trainer, communicators and data libraries (the link line), need them at run time (ldd), or
# contain their code (nm).
#   tests/serve/link_deps_test.sh PATH/TO/dtrain-serve BUILD_DIR
set -euo pipefail
bin=${1:?usage: link_deps_test.sh DTRAIN_SERVE BUILD_DIR}
build=${2:?usage: link_deps_test.sh DTRAIN_SERVE BUILD_DIR}
fail() { echo "link_deps_test: FAIL: $*" >&2; exit 1; }
forbidden='libmpi|libhdf5|libopen-rte|libopen-pal|libnccl|libdtrain_(launch|comm|data|optim|export)[.]a'

# The link line, as the build system holds it (Ninja or Makefiles); the linker's --as-needed would
# hide an unused library from ldd.
if [ -f "$build/build.ninja" ]; then
  line=$(awk '/^build serve\/dtrain-serve:/ {found = 1} found && /LINK_LIBRARIES/ {print; exit}' "$build/build.ninja")
elif [ -f "$build/serve/CMakeFiles/dtrain-serve.dir/link.txt" ]; then
  line=$(cat "$build/serve/CMakeFiles/dtrain-serve.dir/link.txt")
else
  fail "no build.ninja or link.txt under $build to read dtrain-serve's link line from"
fi
[ -n "$line" ] || fail "dtrain-serve's link line not found under $build"
if grep -Eo "[^ ]*($forbidden)[^ ]*" <<<"$line"; then
  fail "dtrain-serve is linked with the libraries above"
fi
libs=$(ldd "$bin")
echo "$libs"
if grep -E "$forbidden" <<<"$libs"; then
  fail "$bin needs MPI, HDF5 or NCCL at run time (lines above)"
fi
syms=$(nm -C "$bin")
for pattern in 'dtrain::Trainer' 'dtrain::ParamSync' 'dtrain::Communicator' 'dtrain::data::Loader' ' H5[A-Z][a-z]*' ' MPI_'; do
  if grep -E "$pattern" <<<"$syms" | head -n 3 | grep -q .; then
    grep -E "$pattern" <<<"$syms" | head -n 3
    fail "$bin contains '$pattern' (lines above)"
  fi
done
echo "link_deps_test: $bin links no MPI, HDF5, NCCL, trainer or communicator"
