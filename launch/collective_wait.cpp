#include "launch/collective_wait.h"

#include "core/error.h"

namespace dtrain {

void wait_or_abort(const Work& work, double timeout_s, const char* what) {
  if (!work.wait(timeout_s))
    abort_job(detail::concat("watchdog: ", what, " not finished after ", timeout_s, " s (comm.timeout_s)"));
}

}  // namespace dtrain
