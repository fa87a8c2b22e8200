// The kernel's OOM kills in a pod, end to end: real captured kmsg records (tests/fixtures/kmsg-6.12,
// their cgroup and pid moved into the fixture's pod) written one by one into a FIFO the daemon reads as
// /dev/kmsg, the pod served by the TLS test API server. Each kill is attributed to the pod and container
// by name in the log and the kill history; the first is one Event with the record; a burst of 50 more
// makes no Event until 10 s have passed, then one that counts them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "daemon_kubernetes_fixture.hpp"
#include "guardian/io/kill_journal.hpp"

namespace oomguard::testing {
namespace {

using namespace daemon_kube;  // NOLINT(google-build-using-namespace): the fixture and its constants

// The captured memcg report with its memcg and victim moved into the trainer container, and its sequence
// numbers moved by `seq_offset` (another OOM). With `whole` false, only the records the daemon needs: the
// first line, the oom-kill summary and the Killed process line (the kernel rate-limits the rest).
std::vector<std::string> reportInTrainer(pid_t victim, uint64_t seq_offset, bool whole) {
  std::ifstream in(OOMGUARD_SOURCE_DIR "/tests/fixtures/kmsg-6.12/memcg.txt");
  EXPECT_TRUE(in) << "missing fixture kmsg-6.12/memcg.txt";
  std::vector<std::string> records;
  for (std::string line; std::getline(in, line);) {
    if (!whole && line.find("invoked oom-killer") == std::string::npos && line.find(";oom-kill:") == std::string::npos &&
        line.find("Killed process") == std::string::npos) {
      continue;
    }
    for (size_t at; (at = line.find("/fxmemcg")) != std::string::npos;) {
      line.replace(at, 8, kTrainerCgroup);
    }
    for (const std::string from : {"pid=141,", "Killed process 141 "}) {
      if (const size_t at = line.find(from); at != std::string::npos) {
        std::string to = from;
        to.replace(to.find("141"), 3, std::to_string(victim));
        line.replace(at, from.size(), to);
      }
    }
    // "prio,seq,usec,flags;message": the second field.
    const size_t first = line.find(',');
    const size_t second = line.find(',', first + 1);
    const uint64_t seq = std::stoull(line.substr(first + 1, second - first - 1)) + seq_offset;
    records.push_back(line.substr(0, first + 1) + std::to_string(seq) + line.substr(second) + "\n");
  }
  return records;
}

class DaemonKernelKills : public DaemonKubernetes {
 protected:
  void SetUp() override {
    DaemonKubernetes::SetUp();
    fifo = (dir / "kmsg").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // Held open for writing by the test, so that the daemon's reader never sees the end of the file.
    writer = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(writer, 0);
  }
  void TearDown() override {
    ::close(writer);
    DaemonKubernetes::TearDown();
  }
  // One record per read(2), as /dev/kmsg gives them: each is written once the daemon has read the last.
  void feed(const std::vector<std::string>& records) {
    for (const auto& record : records) {
      ASSERT_EQ(::write(writer, record.data(), record.size()), static_cast<ssize_t>(record.size()));
      ASSERT_TRUE(runUntil(io, [&] {
        int pending = 0;
        return ::ioctl(writer, FIONREAD, &pending) == 0 && pending == 0;
      }));
    }
  }
  std::string fifo;
  int writer = -1;
};

TEST_F(DaemonKernelKills, AKillIsOneEventWithItsRecordAttributedByNameAndABurstIsBounded) {
  serve({podObject("batch", kSacrificialGroup, "90")});
  start(server->port(), 3600, fifo);
  ASSERT_TRUE(runUntil(io, [&] { return !lines("pod_policy").empty() && daemon->stats().refreshes >= 2; }))
      << log_text.str();

  // The container's limit, as the kubelet sets it: the domain of the OOM, named with its limit.
  writeFile(cgroupDir(kTrainerCgroup) / "memory.max", "50331648\n");
  feed(reportInTrainer(trainer, 0, true));
  ASSERT_EQ(daemon->stats().kernel_oom_kills, 1U) << log_text.str();
  ASSERT_TRUE(runUntil(io, [&] { return !postedEvents("OomguardKernelOomKill").empty(); })) << log_text.str();
  const auto events = postedEvents("OomguardKernelOomKill");
  ASSERT_EQ(events.size(), 1U);
  const Json& event = events[0].second;
  EXPECT_EQ(events[0].first, "/api/v1/namespaces/batch/events");
  EXPECT_EQ(event["involvedObject"]["name"], kPodName);
  EXPECT_EQ(event["type"], "Warning");
  const std::string message = event["message"];
  for (const std::string& part : {"killed pid " + std::to_string(trainer) + " (hog)", std::string("CONSTRAINT_MEMCG"),
                                  std::string("(limit 48.0 MiB)"), std::string("anon-rss 49024 kB"), std::string("page tables 136 kB"),
                                  std::string("oom_score_adj 0")}) {
    EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
  }
  const auto killed = lines("kernel_oom_kill");
  ASSERT_EQ(killed.size(), 1U);
  EXPECT_EQ(killed[0]["workload"]["namespace"], "batch");
  EXPECT_EQ(killed[0]["workload"]["pod"], kPodName);
  EXPECT_EQ(killed[0]["workload"]["container"], "trainer");
  EXPECT_EQ(killed[0]["workload"]["pod_uid"], kPodUid);

  // 50 more OOMs in the same instant: counted and journaled, no Event (one per pod every 10 s).
  for (uint64_t oom = 1; oom <= 50; ++oom) {
    feed(reportInTrainer(trainer, oom * 1000, false));
  }
  EXPECT_EQ(daemon->stats().kernel_oom_kills, 51U);
  runFor(io, std::chrono::milliseconds(300));
  EXPECT_EQ(postedEvents("OomguardKernelOomKill").size(), 1U);
  // 10 s later: one Event, which says how many it stands for.
  now_us += 10'000'001;
  feed(reportInTrainer(trainer, 51'000, false));
  ASSERT_TRUE(runUntil(io, [&] { return postedEvents("OomguardKernelOomKill").size() == 2; })) << log_text.str();
  EXPECT_NE(postedEvents("OomguardKernelOomKill")[1].second["message"].get<std::string>().find("and 50 more"),
            std::string::npos);

  // The kill history: each of the 52 kills once, by name.
  const auto history = guardian::io::readKillJournal((dir / "state").string());
  ASSERT_TRUE(history);
  size_t kills = 0;
  for (const auto& record : history.value().records) {
    if (record["kind"] == "kill") {
      ++kills;
      EXPECT_EQ(record["workload"]["pod"], kPodName);
      EXPECT_EQ(record["workload"]["container"], "trainer");
      EXPECT_EQ(record["pid"], trainer);
      EXPECT_EQ(record["domain_limit_bytes"], 50331648);
    }
  }
  EXPECT_EQ(kills, 52U);
}

}  // namespace
}  // namespace oomguard::testing
