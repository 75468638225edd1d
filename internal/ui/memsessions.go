package ui

import (
	"context"
	"sync"
	"time"

	"github.com/keyhole-gw/keyhole/internal/store"
)

// memSessions is store.Sessions in this node's memory, for a store that
// does not keep sessions: they work on this node only, and a restart
// signs everyone out. At most maxSessions are kept: when full, a new
// session first clears the expired ones, then the least recently seen.
type memSessions struct {
	mu sync.Mutex
	m  map[string]store.Session
}

var _ store.Sessions = (*memSessions)(nil)

func newMemSessions() *memSessions { return &memSessions{m: map[string]store.Session{}} }

func (s *memSessions) CreateSession(_ context.Context, ss store.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[ss.ID]; ok {
		return store.ErrConflict
	}
	if len(s.m) >= maxSessions {
		for id, x := range s.m {
			if !x.ExpiresAt.After(ss.CreatedAt) {
				delete(s.m, id)
			}
		}
	}
	if len(s.m) >= maxSessions {
		var oldest *store.Session
		for _, x := range s.m {
			if oldest == nil || x.LastSeen.Before(oldest.LastSeen) {
				oldest = &x
			}
		}
		delete(s.m, oldest.ID)
	}
	s.m[ss.ID] = ss
	return nil
}

func (s *memSessions) GetSession(_ context.Context, id string, now time.Time) (store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok || !ss.ExpiresAt.After(now) {
		return store.Session{}, store.ErrNotFound
	}
	return ss, nil
}

func (s *memSessions) TouchSession(_ context.Context, id string, seen, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok || !ss.ExpiresAt.After(seen) {
		return store.ErrNotFound
	}
	ss.LastSeen, ss.ExpiresAt = seen, expires
	s.m[id] = ss
	return nil
}

func (s *memSessions) SetFlash(_ context.Context, id, msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok {
		return store.ErrNotFound
	}
	ss.Flash = msg
	s.m[id] = ss
	return nil
}

func (s *memSessions) TakeFlash(_ context.Context, id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok {
		return "", nil
	}
	msg := ss.Flash
	ss.Flash = ""
	s.m[id] = ss
	return msg, nil
}

func (s *memSessions) DeleteSession(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; !ok {
		return store.ErrNotFound
	}
	delete(s.m, id)
	return nil
}

func (s *memSessions) DeleteSessionsOf(_ context.Context, adminTokenID string) (int64, error) {
	return s.deleteWhere(func(ss store.Session) bool { return ss.AdminTokenID == adminTokenID }), nil
}

func (s *memSessions) DeleteExpiredSessions(_ context.Context, now time.Time) (int64, error) {
	return s.deleteWhere(func(ss store.Session) bool { return !ss.ExpiresAt.After(now) }), nil
}

func (s *memSessions) deleteWhere(match func(store.Session) bool) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for id, ss := range s.m {
		if match(ss) {
			delete(s.m, id)
			n++
		}
	}
	return n
}
