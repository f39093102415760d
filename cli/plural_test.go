package cli

import "testing"

func TestCounted(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{counted(0, "record", "records"), "0 records"},
		{counted(1, "record", "records"), "1 record"},
		{counted(int64(2), "record", "records"), "2 records"},
		{counted(int32(1), "copy", "copies"), "1 copy"},
		{counted(-1, "partition", "partitions"), "-1 partitions"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestTopicIDString: the form kafka-topics.sh prints (Kafka's Uuid.toString),
// e.g. "_-8A..." rather than kadm's padded standard base64 "/+8A...==".
func TestTopicIDString(t *testing.T) {
	id := [16]byte{0xff, 0xef, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xfe}
	if got, want := topicIDString(id), "_-8AAQIDBAUGBwgJCgsM_g"; got != want {
		t.Errorf("topicIDString = %q, want %q", got, want)
	}
	if got := topicIDString([16]byte{}); got != "" {
		t.Errorf("zero id = %q, want empty", got)
	}
}
