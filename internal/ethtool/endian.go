package ethtool

import (
	"encoding/binary"
	"unsafe"
)

func nativeEndian() binary.ByteOrder {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}
