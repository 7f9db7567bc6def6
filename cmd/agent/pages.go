package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseBinaryPages takes the pages of the agent's own binary (its code
// and read-only data) out of its resident set: it marks them cold, to be
// the first the kernel reclaims, and unmaps them. They stay in the page
// cache, where the file's copy in the pod's volume holds them anyway, and
// come back with a minor fault when the agent runs that code again. Most of
// them only package initialisation ever ran (docs/agent.md, "Footprint").
func releaseBinaryPages() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return err
	}
	ranges, err := readOnlyMappings(maps, exe)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range ranges {
		for _, advice := range []int{unix.MADV_COLD, unix.MADV_DONTNEED} {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, uintptr(advice)); e != 0 {
				errs = append(errs, fmt.Errorf("madvise(%#x-%#x, %d): %w", r.start, r.end, advice, e))
			}
		}
	}
	return errors.Join(errs...)
}

// mapping is a range of addresses, [start, end).
type mapping struct{ start, end uintptr }

// readOnlyMappings returns the mappings of file path in maps (the format
// of /proc/self/maps) that are not writable: a binary's code and read-only
// data, never its data, which the program writes.
func readOnlyMappings(maps []byte, path string) ([]mapping, error) {
	var ranges []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) < 6 || strings.Join(f[5:], " ") != path || strings.Contains(f[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("a line of /proc/self/maps: %q", sc.Text())
		}
		ranges = append(ranges, mapping{uintptr(start), uintptr(end)})
	}
	return ranges, sc.Err()
}
