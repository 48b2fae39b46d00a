package modbus

import (
	"errors"
	"fmt"
)

// Read Device Identification (function 43, MEI type 14; Modbus Application
// Protocol 1.1b3, 6.21): a device answers with a list of objects, strings in
// practice. The basic stream (ID code 1) holds objects 0-2.

// Basic device identification objects.
const (
	ObjectVendor      byte = 0 // VendorName
	ObjectProductCode byte = 1 // ProductCode
	ObjectRevision    byte = 2 // MajorMinorRevision
)

// DeviceID is one Read Device ID response.
type DeviceID struct {
	IDCode      byte
	Conformity  byte // the device's conformity level (0x01-0x03, 0x81-0x83)
	MoreFollows bool // the objects did not fit one response: ask again from NextObject
	NextObject  byte
	Objects     []DeviceObject
}

// DeviceObject is one identification object.
type DeviceObject struct {
	ID    byte
	Value []byte
}

// ParseDeviceID decodes Response.Data of a ReadDeviceID request (from the ID
// code on). It never reads outside data.
func ParseDeviceID(data []byte) (DeviceID, error) {
	if len(data) < 5 {
		return DeviceID{}, errors.New("read device id response: too short")
	}
	d := DeviceID{IDCode: data[0], Conformity: data[1], MoreFollows: data[2] == 0xFF, NextObject: data[3]}
	n, rest := int(data[4]), data[5:]
	for range n {
		if len(rest) < 2 || len(rest) < 2+int(rest[1]) {
			return d, errors.New("read device id response: object list truncated")
		}
		l := int(rest[1])
		d.Objects = append(d.Objects, DeviceObject{ID: rest[0], Value: append([]byte(nil), rest[2:2+l]...)})
		rest = rest[2+l:]
	}
	if len(rest) != 0 {
		return d, fmt.Errorf("read device id response: %d bytes after the objects", len(rest))
	}
	return d, nil
}

// EncodeDeviceID appends a slave's Read Device ID response to dst: objects
// from req.ObjectID on, as many as fit one frame (MoreFollows and NextObject
// say where the rest starts). The test simulator uses it.
func EncodeDeviceID(dst []byte, req Request, conformity byte, objects []DeviceObject) []byte {
	start := len(dst)
	dst = append(dst, req.Slave, ReadDeviceID, meiDeviceID, req.IDCode, conformity, 0, 0, 0)
	head := len(dst) - 3 // more follows, next object, number of objects
	count := 0
	for _, o := range objects {
		if o.ID < req.ObjectID {
			continue
		}
		if len(dst)-start+2+len(o.Value)+2 > MaxADU {
			dst[head], dst[head+1] = 0xFF, o.ID
			break
		}
		dst = append(dst, o.ID, byte(len(o.Value)))
		dst = append(dst, o.Value...)
		count++
	}
	dst[head+2] = byte(count)
	c := CRC(dst[start:])
	return append(dst, byte(c), byte(c>>8))
}
