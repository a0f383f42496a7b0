package pushtest

import "testing"

func TestEdgeSize(t *testing.T) {
	// 37 bytes of envelope, 3 bytes per unit.
	size := func(pad, n int) (int, error) { return 37 + pad + 3*n, nil }
	pad, n, err := EdgeSize(4096, size)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := size(pad, n); got != 4096 || pad > 2 {
		t.Errorf("pad %d, n %d: %d bytes", pad, n, got)
	}
	if got, _ := size(pad, n+1); got <= 4096 {
		t.Errorf("one more unit is %d bytes, not over", got)
	}
	if _, _, err := EdgeSize(4096, func(pad, n int) (int, error) { return 10 + pad, nil }); err == nil {
		t.Error("a body unit of 0 bytes accepted")
	}
}
