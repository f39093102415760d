package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oncelog/oncelog/httpapi"
	"github.com/twmb/franz-go/pkg/kerr"
)

// keyBackend is an httpapi.Backend whose key window holds fixed entries,
// so that `key get` is tested against the real HTTP handler.
type keyBackend struct{ keys map[string]httpapi.KeyEntry }

func (keyBackend) Topic(string) (httpapi.TopicInfo, *httpapi.Error) {
	return httpapi.TopicInfo{}, &httpapi.Error{Code: kerr.UnknownTopicOrPartition.Code}
}

func (keyBackend) Produce(context.Context, string, int32, []byte) (httpapi.Produced, *httpapi.Error) {
	return httpapi.Produced{}, &httpapi.Error{Code: kerr.UnknownTopicOrPartition.Code}
}

func (k keyBackend) LookupKey(topic string, key []byte) (httpapi.KeyEntry, bool, *httpapi.Error) {
	if topic != "payments" {
		return httpapi.KeyEntry{}, false, &httpapi.Error{Code: kerr.UnknownTopicOrPartition.Code, Message: "topic " + topic + " does not exist"}
	}
	e, ok := k.keys[string(key)]
	return e, ok, nil
}

func TestKeyGet(t *testing.T) {
	t.Setenv(httpURLEnv, "")
	entry := httpapi.KeyEntry{Partition: 2, Offset: 17, Timestamp: 1764636243123, Digest: [32]byte{0xab, 0xcd}}
	srv := httptest.NewServer(httpapi.New(keyBackend{map[string]httpapi.KeyEntry{"order/42": entry}}, httpapi.DefaultConfig()).Handler())
	defer srv.Close()

	out, _, err := runCLI(nil, "key", "get", "payments", "order/42", "--http", srv.URL)
	if err != nil {
		t.Fatalf("key get: %v", err)
	}
	for _, want := range []string{"partition  2", "offset     17", "2025-12-02T00:44:03.123Z (1764636243123)", "abcd000000"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}

	t.Setenv(httpURLEnv, srv.URL+"/") // the environment default, with a trailing slash
	out, _, err = runCLI(nil, "key", "get", "payments", "order/42", "--output", "json")
	if err != nil {
		t.Fatalf("key get --output json: %v", err)
	}
	var got keyGetResult
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if !got.Found || *got.Partition != 2 || *got.Offset != 17 || *got.Timestamp != entry.Timestamp || !strings.HasPrefix(got.Digest, "abcd00") || got.Key != "order/42" {
		t.Errorf("json result %+v", got)
	}

	// Not in the window: exit 1, and the JSON says so.
	out, _, err = runCLI(nil, "key", "get", "payments", "other", "--output", "json")
	if exitCode(err) != 1 || !strings.Contains(out, `"found": false`) || !strings.Contains(err.Error(), "not in the key window") {
		t.Errorf("absent key: exit %d (%v), output %s", exitCode(err), err, out)
	}
	// Unknown topic: exit 1 too, naming it.
	if _, _, err = runCLI(nil, "key", "get", "nosuch", "k"); exitCode(err) != 1 || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown topic: exit %d (%v)", exitCode(err), err)
	}
	// A bad topic name is answered 400: exit 2.
	if _, _, err = runCLI(nil, "key", "get", "bad!", "k"); exitCode(err) != 2 {
		t.Errorf("bad topic name: exit %d (%v)", exitCode(err), err)
	}
}

func TestKeyGetUsageAndConnectionErrors(t *testing.T) {
	t.Setenv(httpURLEnv, "")
	for _, args := range [][]string{
		{"key", "get", "payments"},
		{"key", "get", "payments", "k", "--http", "127.0.0.1:8082"},
		{"key", "get", "payments", "k", "--output", "yaml"},
		{"key", "get", "payments", "k", "--timeout", "0s"},
	} {
		if _, _, err := runCLI(nil, args...); exitCode(err) != 2 {
			t.Errorf("%v: exit %d (%v), want 2", args, exitCode(err), err)
		}
	}
	// Nothing listening: exit 2 with advice.
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	_, _, err := runCLI(nil, "key", "get", "payments", "k", "--http", url)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "--http-listen") {
		t.Errorf("nothing listening: exit %d (%v)", exitCode(err), err)
	}
}
