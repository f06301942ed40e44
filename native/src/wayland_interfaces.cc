#include "common.h"

namespace guestfb {

void InitWaylandInterfaces(Napi::Env /*env*/, Napi::Object /*exports*/) {}

}  // namespace guestfb
