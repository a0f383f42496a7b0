package admin

import (
	"sync"
	"time"
)

// failureLimit counts failed sign-ins per key (a user name, or a client
// address) in fixed windows: after max failures within window from the
// first, the key is refused until the window ends. It is kept in memory,
// per instance, and holds at most size keys.
type failureLimit struct {
	max    int
	window time.Duration
	size   int

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	start    time.Time // of the window, at the first failure
	n        int
	reported bool // the refusal of this window was reported
}

func newFailureLimit(max int, window time.Duration, size int) *failureLimit {
	return &failureLimit{max: max, window: window, size: size, keys: make(map[string]*failures)}
}

// wait returns how long key is refused from now, 0 if it may try; first
// is true for the first refusal of the window, the one worth reporting.
func (l *failureLimit) wait(key string, now time.Time) (d time.Duration, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[key]
	if f == nil || f.n < l.max {
		return 0, false
	}
	d = f.start.Add(l.window).Sub(now)
	if d <= 0 {
		return 0, false
	}
	first, f.reported = !f.reported, true
	return d, first
}

// fail counts a failure of key at now.
func (l *failureLimit) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[key]
	if f != nil && !now.Before(f.start.Add(l.window)) {
		f = nil // the window is over
	}
	if f == nil {
		l.makeRoom(now)
		f = &failures{start: now}
		l.keys[key] = f
	}
	f.n++
}

// reset forgets key's failures (a user that signed in).
func (l *failureLimit) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// makeRoom keeps the map under its size before a new key: it drops the
// keys whose window is over, and if that is not enough the key whose
// window started first (the one that is free soonest).
func (l *failureLimit) makeRoom(now time.Time) {
	if len(l.keys) < l.size {
		return
	}
	var oldest string
	for k, f := range l.keys {
		switch {
		case !now.Before(f.start.Add(l.window)):
			delete(l.keys, k)
		case oldest == "" || f.start.Before(l.keys[oldest].start):
			oldest = k
		}
	}
	if len(l.keys) >= l.size && oldest != "" {
		delete(l.keys, oldest)
	}
}

// len returns how many keys are kept.
func (l *failureLimit) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
