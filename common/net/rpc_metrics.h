// Counts what a gRPC server answers, by method and status code, and how long each call
// took (llava_rpc_requests_total, llava_rpc_latency_seconds): a server interceptor that
// writes into a Prometheus registry. Thread-safe (prometheus-cpp metrics are).
#pragma once

#include <memory>
#include <string>

#include "common/net/metric_family.h"

namespace grpc::experimental {
class ServerInterceptorFactoryInterface;
}

namespace llava {

class RpcMetrics {
 public:
  explicit RpcMetrics(prometheus::Registry& registry);

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators; the interceptors
  // write into this object, which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  // `method`: the full name, "/llava.v1.JobService/SubmitJob"; `code`: a grpc::StatusCode.
  void Record(const std::string& method, int code, double seconds);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
};

}  // namespace llava
