#include "guardian/kube_client/loader.hpp"

#include <dlfcn.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <array>
#include <filesystem>

namespace oomguard::guardian::kube_client {

LoadedTlsClient loadTlsClient() {
  LoadedTlsClient loaded;
  // The executable's path: /proc/self/exe, or, where /proc is not mounted (a chroot), the path the
  // kernel was asked to execute (AT_EXECFN).
  std::array<char, 4096> exe{};
  std::string executable;
  if (const ssize_t length = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1); length > 0) {
    executable.assign(exe.data(), static_cast<size_t>(length));
  } else if (const auto* execfn = reinterpret_cast<const char*>(::getauxval(AT_EXECFN));  // NOLINT(performance-no-int-to-ptr): the auxv entry is a pointer
             execfn != nullptr) {
    executable = execfn;
  }
  if (executable.empty()) {
    loaded.error = "cannot tell where the executable is (no /proc/self/exe, no AT_EXECFN): the module is found beside it";
    return loaded;
  }
  const std::filesystem::path directory = std::filesystem::path(executable).parent_path();
  loaded.path = (directory.parent_path() / "lib" / "oomguard" / "liboomguard_kube_tls.so").string();
  // RTLD_LOCAL: the module's own symbols (its copies of the parsers it links) stay its own.
  void* handle = ::dlopen(loaded.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    loaded.error = why != nullptr ? why : "dlopen failed";
    return loaded;
  }
  auto* entry = reinterpret_cast<TlsClientEntry>(::dlsym(handle, kTlsClientSymbol));
  if (entry == nullptr) {
    loaded.error = loaded.path + ": no symbol " + kTlsClientSymbol + " (a module from another version?)";
    return loaded;
  }
  loaded.client = entry();
  if (loaded.client == nullptr) {
    loaded.error = loaded.path + ": the module returned no client";
  }
  return loaded;
}

}  // namespace oomguard::guardian::kube_client
