// Reading TensorBoard event directories back in tests, as TensorBoard would: every file in
// name order, each record's CRCs checked, and a SessionLog START at step S dropping what
// came before at steps >= S (EventAccumulator's restart rule for brain.Event:2 files).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/tensorboard_events.h"
#include "protos/tensorboard_event.pb.h"

namespace llava::testing {

// Every event of every file of `dir`; each file must open with the file version.
inline std::vector<tensorboard::Event> ReadEventsDir(const std::string& dir) {
  std::vector<tensorboard::Event> events;
  for (const std::string& name : ListDir(dir)) {
    auto records = ReadRecords(dir + "/" + name);
    EXPECT_TRUE(records.ok()) << records.status();
    if (!records.ok()) continue;
    for (size_t i = 0; i < records->size(); ++i) {
      tensorboard::Event e;
      EXPECT_TRUE(e.ParseFromString((*records)[i])) << name << " record " << i;
      if (i == 0) {
        EXPECT_EQ(e.file_version(), "brain.Event:2") << name;
      }
      events.push_back(e);
    }
  }
  return events;
}

// tag -> step -> value, after the restart rule.
inline std::map<std::string, std::map<int64_t, float>> ScalarSeries(
    const std::vector<tensorboard::Event>& events) {
  std::map<std::string, std::map<int64_t, float>> out;
  for (const tensorboard::Event& e : events) {
    if (e.has_session_log() && e.session_log().status() == tensorboard::SessionLog::START) {
      for (auto& [tag, series] : out) series.erase(series.lower_bound(e.step()), series.end());
    }
    for (const auto& v : e.summary().value()) out[v.tag()][e.step()] = v.simple_value();
  }
  return out;
}

}  // namespace llava::testing
