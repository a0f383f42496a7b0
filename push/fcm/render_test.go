package fcm

import (
	"encoding/json"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestRenderMessage(t *testing.T) {
	n := &dispatcher.Notification{Title: "Café", Body: "🎉"}
	got, err := RenderMessage(n)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"notification":{"title":"Café","body":"🎉"},"android":{"priority":"high"}}`
	if string(got) != want {
		t.Errorf("RenderMessage = %s, want %s", got, want)
	}
	if _, err := RenderMessage(&dispatcher.Notification{Data: map[string]json.RawMessage{"from": []byte(`"x"`)}}); err == nil {
		t.Error("reserved data key accepted")
	}
}
