package testsignal

import "testing"

func TestInertUntilInit(t *testing.T) {
	var s Signal[int]
	s.Signal(1) // must neither block nor panic
	if s.Pending() != 0 {
		t.Fatal("an inert signal kept a value")
	}
}

func TestWaitAndWaitFor(t *testing.T) {
	var s Signal[string]
	s.Init()
	s.Signal("a")
	s.Signal("b")
	s.Signal("c")
	if got := s.Wait(t); got != "a" {
		t.Errorf("Wait = %q, want a", got)
	}
	if got := s.WaitFor(t, func(v string) bool { return v == "c" }); got != "c" {
		t.Errorf("WaitFor = %q, want c", got)
	}
	if s.Pending() != 0 {
		t.Errorf("%d left", s.Pending())
	}
}

func TestSignalPanicsWhenNobodyTakes(t *testing.T) {
	var s Signal[int]
	s.Init()
	for i := range capacity {
		s.Signal(i)
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic past the capacity")
		}
	}()
	s.Signal(capacity)
}
