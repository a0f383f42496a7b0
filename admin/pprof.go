package admin

import (
	"net/http"
	"net/http/pprof"
)

// pprofRoutes serves Go's runtime profiles (net/http/pprof) under
// /debug/pprof/ when admin.pprof is on, to admins only, like any other
// admin route: a bearer token or a console session, same-origin rules for
// the POST of symbol lookups. Off, the paths are unknown (404). A CPU
// profile of up to 50 s fits the admin server's write timeout (60 s); see
// docs/operations.md, "Profiling".
func (s *Server) pprofRoutes() {
	if !s.pprof {
		return
	}
	serve := func(h http.HandlerFunc) apiHandler {
		return func(w http.ResponseWriter, r *http.Request, _ principal) error {
			h(w, r)
			return nil
		}
	}
	// Index also serves the named profiles: /debug/pprof/heap,
	// /debug/pprof/goroutine, /debug/pprof/allocs...
	s.handle("GET /debug/pprof/", roleAdmin, serve(pprof.Index))
	s.handle("GET /debug/pprof/cmdline", roleAdmin, serve(pprof.Cmdline))
	s.handle("GET /debug/pprof/profile", roleAdmin, serve(pprof.Profile))
	s.handle("GET /debug/pprof/symbol", roleAdmin, serve(pprof.Symbol))
	s.handle("POST /debug/pprof/symbol", roleAdmin, serve(pprof.Symbol))
	s.handle("GET /debug/pprof/trace", roleAdmin, serve(pprof.Trace))
}
