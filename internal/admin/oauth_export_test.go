package admin

import "time"

// SetOAuthClock moves the clock of OAuth connect flows (tests); it returns
// a function that restores the real one.
func SetOAuthClock(f func() time.Time) (restore func()) {
	oauthClock.Store(f)
	return func() { oauthClock.Store((func() time.Time)(nil)) }
}
