package emulator

import (
	"context"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
)

// FuzzControlPlaneBody feeds arbitrary bodies to every control-plane and
// signaling operation (SendAlexaOfferToMaster excepted: a valid offer
// blocks until the master answers). Each must answer with a result or a
// client error (4xx), never panic or fail with a 5xx.
func FuzzControlPlaneBody(f *testing.F) {
	seeds := []string{
		``, `{}`, `null`, `[]`, `{"ChannelName":`, `{"ChannelName":"fuzz"}`, `{"ChannelName":"a b"}`,
		`{"ChannelName":"x","ChannelType":"FULL_MESH","SingleMasterConfiguration":{"MessageTtlSeconds":4}}`,
		`{"ChannelName":"t","Tags":[{"Key":"k","Value":"v"},{"Key":"k","Value":"w"}]}`,
		`{"ChannelARN":"arn:aws:kinesisvideo:us-west-2:123456789012:channel/fuzz/1700000000000"}`,
		`{"ChannelARN":"arn:aws:kinesisvideo:eu-west-1:1:channel/x/1","CurrentVersion":"v1"}`,
		`{"MaxResults":2,"NextToken":"djE6YQ==","ChannelNameCondition":{"ComparisonOperator":"BEGINS_WITH","ComparisonValue":"f"}}`,
		`{"MaxResults":"x"}`, `{"ResourceARN":"arn:aws:kinesisvideo:us-west-2:123456789012:channel/fuzz/1700000000000","Tags":[]}`,
		`{"ResourceARN":"arn","TagKeyList":["a"]}`, `{"ChannelARN":"x","SingleMasterChannelEndpointConfiguration":{"Protocols":["WSS","WEBRTC"],"Role":"X"}}`,
		`{"ChannelARN":"x","ClientId":"a b","Service":"TURN","Username":"u"}`, `{} trailing`, "{\"ChannelName\":\"\xff\"}",
		`{"ChannelARN":"ARN_FIXED","CurrentVersion":"abc","SingleMasterConfiguration":{"MessageTtlSeconds":120}}`,
		`{"ResourceARN":"ARN_FIXED","Tags":[{"Key":"k","Value":"v"}]}`, `{"ChannelARN":"ARN_FIXED","Service":"TURN"}`,
		`{"StreamName":"s","DataRetentionInHours":1,"MediaType":"video/h264,audio/aac","Tags":{"k":"v"}}`,
		`{"StreamName":"s","MediaType":"a/b,","StreamStorageConfiguration":{"DefaultStorageTier":"COLD"},"Tags":{}}`,
		`{"StreamARN":"arn:aws:kinesisvideo:us-west-2:123456789012:stream/s/1","CurrentVersion":"x"}`,
		`{"StreamNameCondition":{"ComparisonOperator":"BEGINS_WITH","ComparisonValue":"s"},"MaxResults":1}`,
		`{"ChannelARN":"ARN_FIXED","MediaStorageConfiguration":{"Status":"ENABLED","StreamARN":"arn:aws:kinesisvideo:us-west-2:123456789012:stream/s/1"}}`,
		`{"ChannelARN":"ARN_FIXED","MediaStorageConfiguration":{"Status":"DISABLED"}}`,
		`{"channelArn":"ARN_FIXED"}`, `{"channelArn":"ARN_FIXED","clientId":"AWS_x"}`, `{"channelArn":5}`,
	}
	paths := make([]string, 0, len(operations))
	for p := range operations {
		if p != "/v1/send-alexa-offer-to-master" {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	srv, err := Start(context.Background(), Config{TURNDisabled: true, Channels: []string{"fuzz"}, DisableQuotas: true})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	pre, e := srv.store.create("fuzz-fixed", 60, nil, srv.now(), nil)
	if e != nil {
		f.Fatal(e)
	}
	f.Fuzz(func(t *testing.T, op uint8, body []byte) {
		path := paths[int(op)%len(paths)]
		b := strings.ReplaceAll(string(body), "ARN_FIXED", pre.ARN)
		req := httptest.NewRequest("POST", path, strings.NewReader(b))
		out, e := operations[path].handle(srv, req, []byte(b))
		if e != nil {
			if e.Status < 400 || e.Status >= 500 || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %q: bad error %+v", path, b, e)
			}
			return
		}
		if out == nil {
			t.Fatalf("%s %q: nil result without error", path, b)
		}
	})
}
