package persistence

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"

	"twopc/messages"
)

// A frame is a little-endian uint32 payload length, the CRC-32C of the
// payload, then the payload. The length lets a reader find the next frame;
// the CRC tells a torn or damaged payload from a good one.
const frameHeaderSize = 8

// maxRecordSize bounds a record payload. Appends beyond it are refused, so a
// larger length read back from a segment can only be damage, and the reader
// never allocates a buffer from a garbage length.
const maxRecordSize = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecordFrame appends r as one frame. The header is reserved first and
// filled in afterwards so the payload is encoded in place, without a copy.
func appendRecordFrame(dst []byte, r *messages.Record) ([]byte, error) {
	if err := checkRecord(r); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	dst = appendRecord(dst, r)
	payload := dst[start+frameHeaderSize:]
	if len(payload) > maxRecordSize {
		return dst[:start], fmt.Errorf("record encodes to %d bytes, more than the limit of %d", len(payload), maxRecordSize)
	}
	putFrameHeader(dst[start:], payload)
	return dst, nil
}

// frameBytes wraps a payload of any size that fits the length field (used
// for snapshots, which are not bound by maxRecordSize).
func frameBytes(payload []byte) ([]byte, error) {
	if uint64(len(payload)) > math.MaxUint32 {
		return nil, fmt.Errorf("payload of %d bytes does not fit a frame", len(payload))
	}
	out := make([]byte, frameHeaderSize+len(payload))
	copy(out[frameHeaderSize:], payload)
	putFrameHeader(out, out[frameHeaderSize:])
	return out, nil
}

func putFrameHeader(hdr, payload []byte) {
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:8], crc32.Checksum(payload, castagnoli))
}

// DamageError reports a log file whose content cannot be trusted at Offset:
// something other than a torn tail. Open refuses to go on, because skipping
// the bad part would silently forget records that were acknowledged.
type DamageError struct {
	File   string // path as given by Options.Dir joined with the file name
	Offset int64  // byte offset of the frame that is bad
	Reason string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("persistence: %s: damaged record at offset %d: %s", e.File, e.Offset, e.Reason)
}

// segmentScan is what reading one segment found.
type segmentScan struct {
	size    int64  // file size as found
	end     int64  // offset just past the last good frame
	records int    // good records
	torn    string // why the bytes from end on are a torn tail; "" when there are none
}

// scanSegment reads every frame of the segment at path and hands each
// record to apply, in order. In the last segment a bad frame that can only
// be an interrupted write ends the scan as a torn tail; anything else is a
// *DamageError. The file is only read.
func scanSegment(path string, last bool, apply func(messages.Record)) (segmentScan, error) {
	var res segmentScan
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("persistence: %w", err)
	}
	res.size = st.Size()
	r := bufio.NewReaderSize(f, 256<<10)
	var hdr [frameHeaderSize]byte
	var payload []byte

	for res.end < res.size {
		off := res.end
		rem := res.size - off
		// reason says what is wrong with the frame at off; tornIf says whether,
		// in the last segment, that alone marks a torn tail.
		var reason string
		var tornIf bool
		switch {
		case rem < frameHeaderSize:
			reason, tornIf = fmt.Sprintf("frame header cut short (%d of %d bytes)", rem, frameHeaderSize), true
		default:
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return res, fmt.Errorf("persistence: %s: read at offset %d: %w", path, off, err)
			}
			n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
			sum := binary.LittleEndian.Uint32(hdr[4:8])
			frameEnd := off + frameHeaderSize + n
			switch {
			case frameEnd > res.size:
				reason, tornIf = fmt.Sprintf("record length %d runs past the end of the file (%d bytes)", n, res.size), true
			case n == 0:
				reason = "empty record"
			case n > maxRecordSize:
				reason, tornIf = fmt.Sprintf("record length %d exceeds the limit of %d", n, maxRecordSize), frameEnd == res.size
			default:
				if int64(cap(payload)) < n {
					payload = make([]byte, n)
				}
				payload = payload[:n]
				if _, err := io.ReadFull(r, payload); err != nil {
					return res, fmt.Errorf("persistence: %s: read at offset %d: %w", path, off+frameHeaderSize, err)
				}
				if crc32.Checksum(payload, castagnoli) != sum {
					reason = "crc mismatch"
					// A write cut off inside its last frame, possibly followed by
					// blocks the file system allocated but never filled.
					tornIf = frameEnd == res.size
					if !tornIf && last {
						zero, err := allZero(f, frameEnd, res.size)
						if err != nil {
							return res, fmt.Errorf("persistence: %s: %w", path, err)
						}
						tornIf = zero
					}
					break
				}
				rec, err := decodeRecord(payload)
				if err != nil {
					return res, &DamageError{File: path, Offset: off, Reason: err.Error()}
				}
				apply(rec)
				res.records++
				res.end = frameEnd
				continue
			}
		}
		if last && !tornIf {
			// Blocks allocated to the file but never written read as zeros
			// after a power cut; a frame never starts with a zero run.
			zero, err := allZero(f, off, res.size)
			if err != nil {
				return res, fmt.Errorf("persistence: %s: %w", path, err)
			}
			if zero {
				reason, tornIf = "zero fill", true
			}
		}
		if last && tornIf {
			// A torn write is the last write: nothing intact can follow it.
			// An intact frame further on means this one was damaged after
			// it was written — and the frames after it may have been
			// acknowledged as durable, so trimming would lose them.
			at, found, err := intactFrameAfter(f, off+1, res.size)
			if err != nil {
				return res, fmt.Errorf("persistence: %s: %w", path, err)
			}
			if !found {
				res.torn = reason
				return res, nil
			}
			reason += fmt.Sprintf(", yet an intact record follows at offset %d (not a torn tail)", at)
		}
		if !last && tornIf {
			reason += " (in a segment that later segments follow, so not a torn tail)"
		}
		return res, &DamageError{File: path, Offset: off, Reason: reason}
	}
	return res, nil
}

// intactFrameAfter looks for a frame that starts somewhere in [from, to),
// fits before to, passes its CRC and decodes. Only a tail that looks torn
// is searched, so the cost is paid on abnormal logs alone.
func intactFrameAfter(f *os.File, from, to int64) (int64, bool, error) {
	if to-from < frameHeaderSize+1 {
		return 0, false, nil
	}
	buf := make([]byte, to-from)
	if n, err := f.ReadAt(buf, from); n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, false, fmt.Errorf("read at offset %d: %w", from, err)
	}
	for i := 0; i+frameHeaderSize < len(buf); i++ {
		n := int(binary.LittleEndian.Uint32(buf[i : i+4]))
		if n == 0 || n > maxRecordSize || i+frameHeaderSize+n > len(buf) {
			continue
		}
		payload := buf[i+frameHeaderSize : i+frameHeaderSize+n]
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(buf[i+4:i+8]) {
			continue
		}
		if _, err := decodeRecord(payload); err == nil {
			return from + int64(i), true, nil
		}
	}
	return 0, false, nil
}

// allZero reports whether bytes [from, to) of f are all zero.
func allZero(f *os.File, from, to int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for from < to {
		chunk := buf
		if int64(len(chunk)) > to-from {
			chunk = chunk[:to-from]
		}
		n, err := f.ReadAt(chunk, from)
		if n < len(chunk) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, fmt.Errorf("read at offset %d: %w", from, err)
		}
		for _, c := range chunk {
			if c != 0 {
				return false, nil
			}
		}
		from += int64(n)
	}
	return true, nil
}

// readSnapshotFrame checks that data is exactly one intact frame and returns
// its payload.
func readSnapshotFrame(data []byte) ([]byte, error) {
	if len(data) < frameHeaderSize {
		return nil, fmt.Errorf("file is %d bytes, shorter than a frame header", len(data))
	}
	n := uint64(binary.LittleEndian.Uint32(data[0:4]))
	if n != uint64(len(data)-frameHeaderSize) {
		return nil, fmt.Errorf("frame length %d does not match the %d bytes after the header", n, len(data)-frameHeaderSize)
	}
	payload := data[frameHeaderSize:]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(data[4:8]) {
		return nil, errors.New("crc mismatch")
	}
	return payload, nil
}
