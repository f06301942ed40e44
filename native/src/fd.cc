#include "common.h"

namespace guestfb {

void InitFd(Napi::Env /*env*/, Napi::Object /*exports*/) {}

}  // namespace guestfb
