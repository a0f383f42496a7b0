package apns

import (
	"encoding/json"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestRenderPayload(t *testing.T) {
	// "é" is 2 bytes and "🎉" 4 in UTF-8: sizes count bytes, not runes.
	n := &dispatcher.Notification{Title: "Café", Body: "🎉"}
	got, err := RenderPayload(n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"aps":{"alert":{"title":"Café","body":"🎉"}}}`
	if string(got) != want || len(got) != len(want) || len(got) != 49 {
		t.Errorf("RenderPayload = %s (%d bytes), want %s (49 bytes)", got, len(got), want)
	}
	bg := &dispatcher.Notification{Data: map[string]json.RawMessage{"k": []byte(`1`)}, APNs: dispatcher.APNsOptions{PushType: "background"}}
	if got, _ := RenderPayload(bg); string(got) != `{"aps":{"content-available":1},"k":1}` {
		t.Errorf("background = %s", got)
	}
}
