package bridge

import (
	"bytes"
	"encoding/gob"
	"testing"

	"twopc/messages"
)

// An Ack crosses nodes with its Heuristic mark: the wire's encoding carries
// every field of a wire message. (gob, which the wire used before, decodes
// an Ack from a build that predates the field as a plain ack; messages may
// still be gob-encoded elsewhere, so that stays checked.)
func TestWireAckCarriesHeuristic(t *testing.T) {
	tx := messages.TxID{Node: 0, Incarnation: 2, Seq: 5}
	for _, want := range []*messages.Ack{{Tx: tx, From: 1, Heuristic: true}, {Tx: tx, From: 2}} {
		if !wireable(want) {
			t.Fatal("Ack is not wireable")
		}
		in := Batch{From: 1, To: 0, Msgs: []Msg{{To: "coordinator", Body: want}}}
		var e Encoder
		in.EncodeWire(&e)
		var out Batch
		if err := decodeValue(NewDecoder(e.Bytes(), Limits{}), &out); err != nil {
			t.Fatal(err)
		}
		got, ok := out.Msgs[0].Body.(*messages.Ack)
		if !ok || *got != *want {
			t.Fatalf("decoded %T %+v, want %+v", out.Msgs[0].Body, out.Msgs[0].Body, want)
		}
	}

	// An older node's Ack: the same type name, without the field.
	type Ack struct {
		Tx   messages.TxID
		From int32
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&Ack{Tx: tx, From: 1}); err != nil {
		t.Fatal(err)
	}
	var got messages.Ack
	if err := gob.NewDecoder(&buf).Decode(&got); err != nil || got != (messages.Ack{Tx: tx, From: 1}) {
		t.Fatalf("an Ack without the field: %+v %v", got, err)
	}
}
