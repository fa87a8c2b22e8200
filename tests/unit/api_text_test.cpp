// The API client's JSON guards (api_text.hpp): the depth check before any parsing, and the parse that
// keeps only what the pod model reads, whatever else a tenant puts in its pods.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "guardian/kube/pod.hpp"
#include "guardian/kube_client/api_text.hpp"

namespace oomguard::guardian::kube_client {
namespace {

TEST(JsonDepth, CountsOnlyStructureOutsideStrings) {
  const std::string deep64 = std::string(64, '[') + std::string(64, ']');
  const std::string deep65 = std::string(65, '[') + std::string(65, ']');
  EXPECT_TRUE(jsonDepthWithin(deep64, 64));
  EXPECT_FALSE(jsonDepthWithin(deep65, 64));
  EXPECT_TRUE(jsonDepthWithin(R"({"a":")" + std::string(500, '[') + R"("})", 2)) << "brackets in a string";
  EXPECT_TRUE(jsonDepthWithin(R"({"a":"\"[[[[[","b":1})", 1)) << "an escaped quote does not end the string";
  EXPECT_FALSE(jsonDepthWithin(R"({"a":"\\",)" + std::string(3, '{'), 3)) << "an escaped backslash does";
  EXPECT_TRUE(parseBounded(deep64).is_array());
  EXPECT_TRUE(parseBounded(deep65).is_discarded());
  EXPECT_TRUE(parsePodJson(deep65).is_discarded());
}

TEST(PodJson, KeepsWhatThePodModelReadsAndNothingElse) {
  // A pod with every field the model reads, and the bulk a tenant can add anywhere else.
  nlohmann::json args = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) {
    args.push_back("a");
  }
  const nlohmann::json pod = {
      {"metadata",
       {{"uid", "u-1"}, {"name", "web"}, {"namespace", "shop"}, {"resourceVersion", "7"},
        {"labels", {{"app", "web"}}}, {"managedFields", nlohmann::json::array({{{"manager", "kubectl"}}})},
        {"annotations", {{"oomguard.io/v1.protection", "low"}, {"example.com/note", std::string(1000, 'n')}}}}},
      {"spec",
       {{"priority", 10}, {"priorityClassName", "shop-high"}, {"volumes", nlohmann::json::array({{{"name", "v"}}})},
        {"containers", nlohmann::json::array({{{"name", "app"}, {"args", args},
                                               {"env", nlohmann::json::array({{{"name", "X"}, {"value", "1"}}})},
                                               {"resources", {{"requests", {{"memory", "128Mi"}, {"cpu", "1"}}}}}}})}}},
      {"status",
       {{"phase", "Running"}, {"qosClass", "Burstable"}, {"conditions", nlohmann::json::array({{{"type", "Ready"}}})},
        {"containerStatuses", nlohmann::json::array({{{"name", "app"}, {"containerID", "containerd://abc"},
                                                      {"image", "nginx"},
                                                      {"allocatedResources", {{"memory", "256Mi"}, {"cpu", "1"}}}}})}}}};
  const nlohmann::json event = {{"type", "MODIFIED"}, {"object", pod}};
  const nlohmann::json list = {{"kind", "PodList"},
                               {"metadata", {{"resourceVersion", "9"}, {"continue", "c"}}},
                               {"items", nlohmann::json::array({pod})}};
  for (const auto& [what, parsed, object] :
       {std::tuple{"watch event", parsePodJson(event.dump()), std::string("/object")},
        std::tuple{"list", parsePodJson(list.dump()), std::string("/items/0")}}) {
    SCOPED_TRACE(what);
    const nlohmann::json& kept = parsed.at(nlohmann::json::json_pointer(object));
    const nlohmann::json expected = {
        {"metadata",
         {{"uid", "u-1"}, {"name", "web"}, {"namespace", "shop"}, {"resourceVersion", "7"},
          {"annotations", {{"oomguard.io/v1.protection", "low"}}}}},
        {"spec", {{"priority", 10}, {"priorityClassName", "shop-high"},
                  {"containers", nlohmann::json::array({{{"name", "app"}, {"resources", {{"requests", {{"memory", "128Mi"}}}}}}})}}},
        {"status", {{"phase", "Running"}, {"qosClass", "Burstable"},
                    {"containerStatuses", nlohmann::json::array({{{"name", "app"}, {"containerID", "containerd://abc"},
                                                                  {"allocatedResources", {{"memory", "256Mi"}}}}})}}}};
    EXPECT_EQ(kept, expected) << kept.dump();
    // What is kept is what the model needs: the same pod as from the whole object.
    EXPECT_EQ(kube::parsePodObject(kept).value(), kube::parsePodObject(pod).value());
  }
  const auto parsed_list = parsePodJson(list.dump());
  EXPECT_EQ(parsed_list.at("metadata"), (nlohmann::json{{"resourceVersion", "9"}, {"continue", "c"}}));
  EXPECT_EQ(parsePodJson(event.dump()).at("type"), "MODIFIED");
  // A watch ERROR event keeps its status code and message.
  const auto error = parsePodJson(R"({"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old","details":{"x":1}}})");
  EXPECT_EQ(error.at("object"), (nlohmann::json{{"kind", "Status"}, {"code", 410}, {"message", "too old"}}));
}

}  // namespace
}  // namespace oomguard::guardian::kube_client
