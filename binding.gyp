{
  "targets": [
    {
      "target_name": "guestfb",
      "sources": [
        "native/src/addon.cc",
        "native/src/common.cc",
        "native/src/wayland_interfaces.cc",
        "native/src/wayland_server.cc",
        "native/src/wayland_client.cc",
        "native/src/fd.cc",
        "native/src/drm.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(pkg-config --cflags-only-I libdrm | sed s/-I//g)"
      ],
      "libraries": [
        "<!@(pkg-config --libs wayland-server wayland-client libdrm)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc": ["-std=gnu++20", "-fexceptions", "-Wall", "-Wextra", "-Werror"]
    }
  ]
}
