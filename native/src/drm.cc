#include "common.h"

namespace guestfb {

void InitDrm(Napi::Env /*env*/, Napi::Object /*exports*/) {}

}  // namespace guestfb
