// The open-file limit (RLIMIT_NOFILE) and how many of its descriptors long-lived watches may hold.
// A PSI trigger holds one descriptor for as long as its cgroup is watched; the reads, kills (pidfds),
// hooks, the log and the HTTP and Kubernetes clients need theirs at any time. Without a budget, a node
// with more cgroups than the limit allows would spend every descriptor on triggers, and then fail to open
// the /proc file or the pidfd a kill needs (EMFILE): a guardian made blind by its own watches.
#pragma once

#include <cstddef>
#include <memory>

namespace oomguard::guardian::io {

// The soft and hard RLIMIT_NOFILE, before and after raiseOpenFileLimit.
struct OpenFileLimit {
  size_t soft_before = 0;
  size_t soft = 0;
  size_t hard = 0;
};

// Raises the soft open-file limit to the hard one (capped at kMaxOpenFiles), as a daemon that uses
// epoll (never select(): descriptors above 1023 are safe) may: the default soft limit of services and
// containers, 1024, is less than the PSI triggers of a busy node needs. Hooks inherit the raised limit
// (posix_spawn cannot lower it for the child alone), as processes in containers commonly run with it.
// Returns the limits; a failure to raise leaves them as they were.
OpenFileLimit raiseOpenFileLimit();
inline constexpr size_t kMaxOpenFiles = size_t{1} << 20;
inline constexpr size_t kDefaultSoftLimit = 1024;

// How many PSI triggers fit in `soft_limit` open files with kReservedFds left for everything else.
inline constexpr size_t kReservedFds = 512;
size_t triggerBudgetFor(size_t soft_limit);

// A count of descriptors held by one kind of watch, at most max(). Shares are taken and given back by
// their holders' lifetimes; a share may outlive the budget object (it holds the count it returns to).
class FdBudget {
 public:
  explicit FdBudget(size_t max);

  // One descriptor's share; returns it when destroyed. Empty (false) when the budget was spent.
  class Share {
   public:
    Share() = default;
    Share(Share&&) noexcept = default;
    Share& operator=(Share&& other) noexcept;
    Share(const Share&) = delete;
    Share& operator=(const Share&) = delete;
    ~Share();
    explicit operator bool() const { return count_ != nullptr; }

   private:
    friend class FdBudget;
    explicit Share(std::shared_ptr<size_t> count) : count_(std::move(count)) {}
    std::shared_ptr<size_t> count_;
  };

  [[nodiscard]] Share take();
  [[nodiscard]] bool available() const { return *used_ < max_; }
  [[nodiscard]] size_t used() const { return *used_; }
  [[nodiscard]] size_t free() const { return *used_ < max_ ? max_ - *used_ : 0; }
  [[nodiscard]] size_t max() const { return max_; }
  void setMax(size_t max) { max_ = max; }

 private:
  size_t max_;
  std::shared_ptr<size_t> used_ = std::make_shared<size_t>(0);
};

}  // namespace oomguard::guardian::io
