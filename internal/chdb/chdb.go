// Package chdb binds libchdb.so, the in-process ClickHouse engine, through
// purego: no cgo, so CGO_ENABLED=0 builds keep working, and the 559 MB
// library is dlopen'ed only when the embedded store is actually chosen.
//
// C API used (chdb.h, chDB 26.5):
//
//	chdb_connection *chdb_connect(int argc, char **argv);          // pointer to handle, NULL on failure
//	void             chdb_close_conn(chdb_connection *conn);        // takes the pointer-to-handle
//	chdb_result     *chdb_query_n(chdb_connection conn,             // takes the handle (*ptr)
//	                              const char *query, size_t query_len,
//	                              const char *format, size_t format_len);
//	char            *chdb_result_buffer(chdb_result *r);
//	size_t           chdb_result_length(chdb_result *r);
//	const char      *chdb_result_error(chdb_result *r);              // NULL when no error
//	void             chdb_destroy_query_result(chdb_result *r);
//	void             chdb_set_signal_handlers_enabled(int enabled);
//
// chdb_connect resets the Go runtime's handlers for SIGSEGV and friends to
// SIG_DFL (observed on 26.5.3, whatever chdb_set_signal_handlers_enabled says),
// so Open snapshots the dispositions around each connect and restores them.
//
// Engine rules (from chdb.h and tried here): one storage path per process.
// Several connections to that same path may be open at once; a different path
// needs every connection closed first (the engine shuts down and reboots),
// which Open refuses rather than letting chDB fail obscurely. A connection runs
// one statement at a time, so each Conn serializes its calls with a mutex.
package chdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Version is the libchdb release this binding was written and tested against.
const Version = "26.5.3"

// EnvLib overrides where the library is looked up.
const EnvLib = "LASTMILE_CHDB_LIB"

// DefaultLibPath is $LASTMILE_CHDB_LIB if set, else
// ${XDG_CACHE_HOME:-~/.cache}/lastmile/chdb/<Version>/libchdb.so, which is
// where scripts/fetch-libchdb.sh (`make libchdb`) puts it.
func DefaultLibPath() string {
	if p := os.Getenv(EnvLib); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "lastmile", "chdb", Version, "libchdb.so")
}

// lib holds the resolved entry points; loaded once per process because a
// second dlopen of the same engine would share its global state anyway.
type lib struct {
	path string

	connect       uintptr
	closeConn     uintptr
	queryN        uintptr
	resultBuffer  uintptr
	resultLength  uintptr
	resultError   uintptr
	destroyResult uintptr
}

var (
	engineMu   sync.Mutex
	loaded     *lib
	enginePath string // data dir of the live engine; "" when no connection is open
	engineRefs int    // open connections to enginePath
)

func load(path string) (*lib, error) {
	if loaded != nil {
		if loaded.path != path {
			return nil, fmt.Errorf("chdb: %s already loaded; cannot also load %s", loaded.path, path)
		}
		return loaded, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		return nil, fmt.Errorf("chdb: dlopen %s: %w", path, err)
	}
	l := &lib{path: path}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{
		{&l.connect, "chdb_connect"},
		{&l.closeConn, "chdb_close_conn"},
		{&l.queryN, "chdb_query_n"},
		{&l.resultBuffer, "chdb_result_buffer"},
		{&l.resultLength, "chdb_result_length"},
		{&l.resultError, "chdb_result_error"},
		{&l.destroyResult, "chdb_destroy_query_result"},
	} {
		if *s.p, err = purego.Dlsym(h, s.name); err != nil {
			return nil, fmt.Errorf("chdb: %s lacks %s (want libchdb %s): %w", path, s.name, Version, err)
		}
	}
	// Keep ClickHouse's crash handlers out: with them on, a Go nil
	// dereference hung for minutes in chDB's handler before dying. Turning
	// them off resets some signals to SIG_DFL, so restore around the call.
	if fn, err := purego.Dlsym(h, "chdb_set_signal_handlers_enabled"); err == nil {
		var sigs sigState
		saveSignals(&sigs)
		purego.SyscallN(fn, 0)
		restoreSignals(&sigs)
	}
	loaded = l
	return l, nil
}

// Conn is one chDB connection. Methods are safe for concurrent use; calls on
// one Conn run one at a time.
type Conn struct {
	mu     sync.Mutex
	lib    *lib
	ptr    uintptr // chdb_connection* as returned by chdb_connect
	handle uintptr // *ptr, the chdb_connection passed to queries
	path   string
}

// Open loads the library (libPath "" means DefaultLibPath) and connects to the
// engine storing its data in dataDir. Only one dataDir per process: opening a
// second directory while a connection is open is an error.
func Open(libPath, dataDir string) (*Conn, error) {
	if libPath == "" {
		libPath = DefaultLibPath()
	}
	// Checked first so a missing library is reported as such, whatever
	// else is wrong.
	if _, err := os.Stat(libPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("chdb: library not found at %s: run `make libchdb` to fetch it", libPath)
		}
		return nil, fmt.Errorf("chdb: library %s: %w", libPath, err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("chdb: data dir %q: %w", dataDir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("chdb: data dir: %w", err)
	}

	engineMu.Lock()
	defer engineMu.Unlock()
	if engineRefs > 0 && enginePath != abs {
		return nil, fmt.Errorf("chdb: engine already open on %s; one data dir per process (close it before opening %s)", enginePath, abs)
	}
	l, err := load(libPath)
	if err != nil {
		return nil, err
	}

	args := []string{"clickhouse", "--path=" + abs}
	cstrs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1) // NULL-terminated like a real argv
	for i, a := range args {
		cstrs[i] = append([]byte(a), 0)
		argv[i] = &cstrs[i][0]
	}
	// chdb_connect clobbers the Go runtime's signal handlers; put them back.
	var sigs sigState
	saveSignals(&sigs)
	ptr, _, _ := purego.SyscallN(l.connect, uintptr(len(args)), uintptr(unsafe.Pointer(&argv[0])))
	restoreSignals(&sigs)
	runtime.KeepAlive(cstrs)
	if ptr == 0 {
		return nil, fmt.Errorf("chdb: connect to %s failed (see stderr for the engine's message)", abs)
	}
	handle := *(*uintptr)(cptr(ptr))
	if handle == 0 {
		return nil, fmt.Errorf("chdb: connect to %s returned an empty handle", abs)
	}
	enginePath = abs
	engineRefs++
	return &Conn{lib: l, ptr: ptr, handle: handle, path: abs}, nil
}

// Path is the engine's data directory.
func (c *Conn) Path() string { return c.path }

// Error is a statement the engine rejected; Msg is chDB's own text.
type Error struct{ Msg string }

func (e *Error) Error() string { return "chdb: " + e.Msg }

// ErrClosed is returned for calls on a closed Conn.
var ErrClosed = errors.New("chdb: connection closed")

// Query runs one statement and returns its output in format (e.g.
// "JSONEachRow", "TabSeparated"). The result is copied into Go memory.
func (c *Conn) Query(sql, format string) ([]byte, error) {
	return c.run(sql, format, true)
}

// Exec runs one statement and discards any output, saving the copy.
func (c *Conn) Exec(sql string) error {
	_, err := c.run(sql, "Null", false)
	return err
}

func (c *Conn) run(sql, format string, keep bool) ([]byte, error) {
	if sql == "" {
		return nil, errors.New("chdb: empty query")
	}
	if format == "" {
		format = "TabSeparated"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == 0 {
		return nil, ErrClosed
	}
	l := c.lib
	// The string bytes stay alive for the call (SyscallN is uintptrescapes)
	// and chdb_query_n is binary-safe, so no NUL-terminated copy is needed.
	res, _, _ := purego.SyscallN(l.queryN, c.handle,
		uintptr(unsafe.Pointer(unsafe.StringData(sql))), uintptr(len(sql)),
		uintptr(unsafe.Pointer(unsafe.StringData(format))), uintptr(len(format)))
	if res == 0 {
		return nil, errors.New("chdb: query returned no result")
	}
	defer purego.SyscallN(l.destroyResult, res)

	if e, _, _ := purego.SyscallN(l.resultError, res); e != 0 {
		return nil, &Error{Msg: trimNL(goString(e))}
	}
	if !keep {
		return nil, nil
	}
	buf, _, _ := purego.SyscallN(l.resultBuffer, res)
	n, _, _ := purego.SyscallN(l.resultLength, res)
	if buf == 0 || n == 0 {
		return []byte{}, nil
	}
	out := make([]byte, n)
	copy(out, unsafe.Slice((*byte)(cptr(buf)), n))
	return out, nil
}

// Close closes the connection. Closing the last connection of the process
// shuts the engine down; the data stays on disk.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handle == 0 {
		return nil
	}
	purego.SyscallN(c.lib.closeConn, c.ptr)
	c.handle, c.ptr = 0, 0

	engineMu.Lock()
	engineRefs--
	if engineRefs == 0 {
		enginePath = ""
	}
	engineMu.Unlock()
	return nil
}

// goString copies a NUL-terminated C string.
func goString(p uintptr) string {
	base := cptr(p)
	n := 0
	for *(*byte)(unsafe.Add(base, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(base), n))
}

// cptr turns an address returned by C into a pointer. The memory is C's, so
// the GC ignores it; the indirection keeps `go vet` from flagging a
// uintptr-to-Pointer conversion it cannot prove safe.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	return s
}
