#include "common.h"

namespace guestfb {

void InitWaylandServer(Napi::Env /*env*/, Napi::Object /*exports*/) {}

}  // namespace guestfb
