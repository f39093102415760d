package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Record values are small fixed binary layouts, so that every record read
// back names who wrote it and, for the output topic, which input it came
// from and which transaction carried it.

const (
	inputMagic  = 'I'
	outputMagic = 'O'

	// inputValueSize: magic, producer (uint16), sequence (uint64).
	inputValueSize = 1 + 2 + 8
	// outputValueSize: magic, member (uint16), transaction (uint64),
	// input partition (int32), input offset (int64), input value.
	outputValueSize = 1 + 2 + 8 + 4 + 8 + inputValueSize
)

var errBadValue = errors.New("not a chaos record value")

// RecordID names one input record: the producer that wrote it and its
// per-producer sequence number (0, 1, 2, ... in send order).
type RecordID struct {
	Producer uint16
	Seq      uint64
}

func (id RecordID) String() string { return fmt.Sprintf("p%d#%d", id.Producer, id.Seq) }

// EncodeInput is the value of the input record id: who wrote it and its
// per-producer sequence number, so a read names every record.
func EncodeInput(id RecordID) []byte {
	b := make([]byte, inputValueSize)
	b[0] = inputMagic
	binary.BigEndian.PutUint16(b[1:], id.Producer)
	binary.BigEndian.PutUint64(b[3:], id.Seq)
	return b
}

// DecodeInput is the inverse of EncodeInput.
func DecodeInput(b []byte) (RecordID, error) {
	if len(b) != inputValueSize || b[0] != inputMagic {
		return RecordID{}, errBadValue
	}
	return RecordID{Producer: binary.BigEndian.Uint16(b[1:]), Seq: binary.BigEndian.Uint64(b[3:])}, nil
}

// TxnID names one transaction of the transform stage: the member that ran
// it and its per-member number, counted from 1.
type TxnID struct {
	Member uint16
	Seq    uint64
}

func (t TxnID) String() string { return fmt.Sprintf("m%d/txn%d", t.Member, t.Seq) }

// OutputValue is what the transform writes for one input record: the
// transaction that carries it and the input record it came from.
type OutputValue struct {
	Txn            TxnID
	InputPartition int32
	InputOffset    int64
	Input          RecordID
}

func encodeOutput(v OutputValue) []byte {
	b := make([]byte, 0, outputValueSize)
	b = append(b, outputMagic)
	b = binary.BigEndian.AppendUint16(b, v.Txn.Member)
	b = binary.BigEndian.AppendUint64(b, v.Txn.Seq)
	b = binary.BigEndian.AppendUint32(b, uint32(v.InputPartition))
	b = binary.BigEndian.AppendUint64(b, uint64(v.InputOffset))
	return append(b, EncodeInput(v.Input)...)
}

func decodeOutput(b []byte) (OutputValue, error) {
	if len(b) != outputValueSize || b[0] != outputMagic {
		return OutputValue{}, errBadValue
	}
	in, err := DecodeInput(b[23:])
	if err != nil {
		return OutputValue{}, err
	}
	return OutputValue{
		Txn:            TxnID{Member: binary.BigEndian.Uint16(b[1:]), Seq: binary.BigEndian.Uint64(b[3:])},
		InputPartition: int32(binary.BigEndian.Uint32(b[11:])),
		InputOffset:    int64(binary.BigEndian.Uint64(b[15:])),
		Input:          in,
	}, nil
}
