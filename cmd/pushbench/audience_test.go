package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pushd/pushd/internal/audiencecsv"
	"github.com/pushd/pushd/store"
)

// TestAudienceCSV checks that the generated file is one the store takes
// whole: every line valid, no two alike.
func TestAudienceCSV(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "pushd.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.ImportAudience(context.Background(), "bench", "pushbench", &audiencecsv.Reader{N: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if a.Recipients != 5000 || a.IOS != 2500 || len(a.Zones) != len(audiencecsv.Zones)-1 {
		t.Errorf("imported %+v", a)
	}
}
