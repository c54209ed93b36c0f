// Shared helpers for the test suite: where fixtures live, and tensor comparisons.
#pragma once

#include <string>

#include "common/tensor_compare.h"

namespace llava::testing {

// $LLAVA_FIXTURES, default <source>/../shared/fixtures.
std::string FixturesDir();
// $LLAVA_TOKENIZER, default <source>/data/tokenizer/tokenizer.json.
std::string TokenizerPath();
// <source>; tests run with it as the working directory.
std::string SourceDir();
// <build>/bin/llava-mnist.
std::string BinaryPath();
// A fresh empty directory under the test temp dir, removed by nobody (ctest's tmp).
std::string MakeTempDir(const std::string& tag);

// Development certificates from scripts/dev_certs.sh (a CA, a server certificate for
// localhost and 127.0.0.1, a client certificate, a token), made once per test binary.
struct TestPki {
  std::string dir, ca, server_cert, server_key, client_cert, client_key, token;
};
const TestPki& DevCertificates();

// One HTTP/1.1 request to 127.0.0.1:port: the status line's code and the body
// (code -1 when the connection fails).
struct HttpReply {
  int code = -1;
  std::string body;
};
HttpReply HttpRequest(int port, const std::string& method, const std::string& path);

// ||a - b|| / ||b|| in float64 (common/tensor_compare.h), as the tests have always named it.
using ::llava::RelError;

}  // namespace llava::testing
