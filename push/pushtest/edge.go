// Package pushtest helps the provider adapters' tests.
package pushtest

import "fmt"

// EdgeSize finds the seed of a rendered message of exactly limit bytes:
// the title padded with pad one-byte characters and the body unit repeated
// n times. size renders a message so padded and repeated and returns its
// size; each pad character must add one byte and each unit the same
// number of bytes. The message with n+1 units is then one unit over the
// limit.
func EdgeSize(limit int, size func(pad, n int) (int, error)) (pad, n int, err error) {
	one, err := size(0, 1)
	if err != nil {
		return 0, 0, err
	}
	two, err := size(0, 2)
	if err != nil {
		return 0, 0, err
	}
	per := two - one
	if per <= 0 {
		return 0, 0, fmt.Errorf("a body unit adds %d bytes", per)
	}
	for (limit-one-pad)%per != 0 {
		pad++
	}
	n = 1 + (limit-one-pad)/per
	got, err := size(pad, n)
	if err != nil {
		return 0, 0, err
	}
	if got != limit {
		return 0, 0, fmt.Errorf("the edge seed is %d bytes, not %d", got, limit)
	}
	return pad, n, nil
}
