package process

import (
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// outputStream is the read end of a worker's stdout or stderr pipe. It
// tells when its reader has handled everything the pipe held: the reader
// then waits for more, and the pipe is empty.
type outputStream struct {
	f  *os.File
	rc syscall.RawConn
	// parked is 0 while a read is under way, and a number of its own each
	// time a read finds the pipe empty (the reader then waits for more).
	// A reader reads only once it has handled the lines read before, so
	// parked and an empty pipe mean all that was written is handled.
	parked atomic.Uint64
	seq    atomic.Uint64
}

func newOutputStream(f *os.File) *outputStream {
	s := &outputStream{f: f}
	// os.Pipe's files are non-blocking and in the runtime's poller, so
	// their RawConn waits in the poller, as os.File.Read does.
	rc, err := f.SyscallConn()
	if err == nil {
		s.rc = rc
	}
	return s
}

func (s *outputStream) Read(b []byte) (int, error) {
	if s.rc == nil {
		return s.f.Read(b)
	}
	var n int
	var err error
	rerr := s.rc.Read(func(fd uintptr) bool {
		s.parked.Store(0)
		for {
			n, err = syscall.Read(int(fd), b)
			if err != syscall.EINTR {
				break
			}
		}
		if err == syscall.EAGAIN {
			s.parked.Store(s.seq.Add(1))
			return false // wait in the poller until there is more
		}
		return true
	})
	switch {
	case rerr != nil:
		return 0, rerr
	case err != nil:
		return 0, &os.PathError{Op: "read", Path: s.f.Name(), Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *outputStream) Close() error { return s.f.Close() }

// handled reports whether the reader has handled all that was written to
// the pipe before the call (but a last line with no newline yet).
func (s *outputStream) handled() bool {
	if s.rc == nil {
		return false
	}
	parked := s.parked.Load()
	if parked == 0 {
		return false
	}
	pending, ierr := 0, error(nil)
	if err := s.rc.Control(func(fd uintptr) { pending, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ierr != nil {
		return false
	}
	// TIOCINQ is FIONREAD: the bytes in the pipe, not yet read.
	// Still parked in the same wait: no read took bytes between the two
	// looks, so none can be on their way to the lines.
	return pending == 0 && s.parked.Load() == parked
}

// drained reports whether every stream's reader has handled all that was
// written to it.
func drained(streams []*outputStream) bool {
	for _, s := range streams {
		if !s.handled() {
			return false
		}
	}
	return true
}
