// The Prometheus endpoint over real HTTP on loopback: the registry's metrics and added
// collectables in the text format, 404/405 for anything else, and a stalled client that
// cannot block the next scrape for longer than the I/O timeout.
#include "common/net/metrics_endpoint.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "test_util.h"

namespace llava {
namespace {

using std::chrono::milliseconds;

class Answer : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily f;
    f.name = "test_answer";
    f.help = "read at scrape time";
    f.type = prometheus::MetricType::Gauge;
    prometheus::ClientMetric m;
    m.gauge.value = 42;
    f.metric.push_back(m);
    return {f};
  }
};

// A TCP connection to 127.0.0.1:port that sends nothing (-1 if it fails).
int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(MetricsEndpointTest, ServesTheRegistryAndCollectablesAtScrapeTime) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  MetricsEndpoint& e = **endpoint;
  ASSERT_GT(e.port(), 0);
  auto registry = std::make_shared<prometheus::Registry>();
  e.Add(registry);
  auto& counter =
      prometheus::BuildCounter().Name("test_events_total").Help("events").Register(*registry);
  counter.Add({{"kind", "a"}}).Increment(3);
  auto answer = std::make_shared<Answer>();
  e.Add(answer);

  testing::HttpReply r = testing::HttpRequest(e.port(), "GET", "/metrics");
  ASSERT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("# TYPE test_events_total counter"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("test_events_total{kind=\"a\"} 3"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("test_answer 42"), std::string::npos) << r.body;

  counter.Add({{"kind", "a"}}).Increment();
  answer.reset();  // held weakly: gone from the next scrape
  r = testing::HttpRequest(e.port(), "GET", "/metrics");
  EXPECT_NE(r.body.find("test_events_total{kind=\"a\"} 4"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("test_answer"), std::string::npos) << r.body;

  EXPECT_EQ(testing::HttpRequest(e.port(), "GET", "/").code, 404);
  EXPECT_EQ(testing::HttpRequest(e.port(), "DELETE", "/metrics").code, 405);
}

TEST(MetricsEndpointTest, AStalledClientDoesNotBlockTheNextScrapeForLong) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", milliseconds(300));
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  // Connects and sends half a request, then says nothing more.
  const int fd = ConnectLoopback((*endpoint)->port());
  ASSERT_GE(fd, 0);
  ASSERT_GT(send(fd, "GET /met", 8, MSG_NOSIGNAL), 0);
  const auto start = std::chrono::steady_clock::now();
  testing::HttpReply r = testing::HttpRequest((*endpoint)->port(), "GET", "/metrics");
  EXPECT_EQ(r.code, 200);
  // Served once the stalled connection timed out (300 ms), not after the 10 s the
  // request helper would wait.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  close(fd);
}

// Issue 15, finding 5: six idle connections delayed a scrape by 30 s (one connection at a
// time, each waiting for its timeout). Connections are now read side by side.
TEST(MetricsEndpointTest, IdleConnectionsDoNotDelayAScrape) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", milliseconds(30000));
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  std::vector<int> idle;
  for (int i = 0; i < 6; ++i) {
    idle.push_back(ConnectLoopback((*endpoint)->port()));
    ASSERT_GE(idle.back(), 0);
  }
  const auto start = std::chrono::steady_clock::now();
  testing::HttpReply r = testing::HttpRequest((*endpoint)->port(), "GET", "/metrics");
  EXPECT_EQ(r.code, 200);
  // Served while all six stay open, long before any of their 30 s timeouts.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  for (int fd : idle) close(fd);
}

TEST(MetricsEndpointTest, BadAddressesAreRefusedNamingTheFlag) {
  for (const char* bad : {"nonsense", "127.0.0.1:99999", "not-an-ip:9464"}) {
    auto e = MetricsEndpoint::Start(bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.status().message().find("--metrics_listen"), std::string::npos) << e.status();
  }
  auto first = MetricsEndpoint::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok());
  auto taken = MetricsEndpoint::Start("127.0.0.1:" + std::to_string((*first)->port()));
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.status().message().find("cannot listen"), std::string::npos) << taken.status();
}

}  // namespace
}  // namespace llava
