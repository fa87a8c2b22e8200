#include "guardian/io/fd_budget.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <utility>

namespace oomguard::guardian::io {

OpenFileLimit raiseOpenFileLimit() {
  OpenFileLimit result{kDefaultSoftLimit, kDefaultSoftLimit, kDefaultSoftLimit};
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return result;  // unreadable: assumed the common default
  }
  auto clamp = [](rlim_t value) {
    return value == RLIM_INFINITY ? kMaxOpenFiles
                                  : static_cast<size_t>(std::min<rlim_t>(value, kMaxOpenFiles));
  };
  result.soft_before = clamp(limit.rlim_cur);
  result.soft = result.soft_before;
  result.hard = clamp(limit.rlim_max);
  if (result.hard > result.soft) {
    rlimit raised = limit;
    raised.rlim_cur = static_cast<rlim_t>(result.hard);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      result.soft = result.hard;
    }
  }
  return result;
}

size_t triggerBudgetFor(size_t soft_limit) {
  // A limit of 1024 keeps 512 for triggers; a tiny one (a test's ulimit) half of itself.
  return soft_limit > 2 * kReservedFds ? soft_limit - kReservedFds : soft_limit / 2;
}

FdBudget::FdBudget(size_t max) : max_(max) {}

FdBudget::Share& FdBudget::Share::operator=(Share&& other) noexcept {
  if (this != &other) {
    if (count_) {
      --*count_;
    }
    count_ = std::move(other.count_);
  }
  return *this;
}

FdBudget::Share::~Share() {
  if (count_) {
    --*count_;
  }
}

FdBudget::Share FdBudget::take() {
  if (*used_ >= max_) {
    return Share();
  }
  ++*used_;
  return Share(used_);
}

}  // namespace oomguard::guardian::io
