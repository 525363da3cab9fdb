#pragma once
// The launch's own collectives (the stop vote, the logged training sums, the evaluation counts,
// the RNG offsets of a checkpoint) follow ParamSync's watchdog rule: never hang, end the whole
// job with the reason.
#include "comm/communicator.h"

namespace dtrain {

// Waits for `work`; past `timeout_s` (comm.timeout_s) ends the job with a message naming `what`.
void wait_or_abort(const Work& work, double timeout_s, const char* what);

}  // namespace dtrain
