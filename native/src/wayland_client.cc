#include "common.h"

namespace guestfb {

void InitWaylandClient(Napi::Env /*env*/, Napi::Object /*exports*/) {}

}  // namespace guestfb
