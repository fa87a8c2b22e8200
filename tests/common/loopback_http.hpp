// A plain HTTP client for tests, to 127.0.0.1 only, with a socket timeout: connect, one HTTP/1.0
// request (so no server answers chunked, and every one closes), read until the server closes.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace oomguard::testing {

// A socket connected to 127.0.0.1:`port` with send/receive timeouts of `timeout_s`, or -1.
inline int connectLoopback(int port, int timeout_s = 5) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct HttpExchange {
  int status = 0;  // 0: no connection, or closed without an answer
  std::string body;
  double millis = 0;  // connect to close
};

inline HttpExchange httpExchange(int port, const std::string& method, const std::string& target, int timeout_s = 5) {
  const auto start = std::chrono::steady_clock::now();
  HttpExchange out;
  const int fd = connectLoopback(port, timeout_s);
  if (fd < 0) {
    return out;
  }
  const std::string request = method + " " + target + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return out;
  }
  std::string raw;
  char chunk[65536];
  ssize_t got = 0;
  while ((got = ::read(fd, chunk, sizeof chunk)) > 0) {
    raw.append(chunk, static_cast<size_t>(got));
  }
  ::close(fd);
  if (raw.rfind("HTTP/1.", 0) == 0 && raw.size() >= 12) {
    out.status = std::stoi(raw.substr(9, 3));
  }
  if (const auto body = raw.find("\r\n\r\n"); body != std::string::npos) {
    out.body = raw.substr(body + 4);
  }
  out.millis = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace oomguard::testing
