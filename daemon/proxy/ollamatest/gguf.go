package ollamatest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// Shape of the tiny model: small enough to write in well under a second
// (about 0.6 MB) and to answer in milliseconds on a CPU, large enough to be
// a real llama model to Ollama.
const (
	tinyLayers  = 2
	tinyEmbd    = 64
	tinyHeads   = 4
	tinyFF      = 128
	tinyContext = 2048
)

// GGUF value types (the numbering of the GGUF v3 format).
const (
	ggufUint32  = 4
	ggufInt32   = 5
	ggufFloat32 = 6
	ggufBool    = 7
	ggufString  = 8
	ggufArray   = 9
)

// tinyVocab is a SentencePiece-style vocabulary: the three specials, the
// 256 byte tokens llama.cpp falls back on (it looks up <0x0A> for a
// newline), the word-start marker and a few pieces.
func tinyVocab() (tokens []string, scores []float32, types []int32) {
	add := func(t string, score float32, typ int32) {
		tokens, scores, types = append(tokens, t), append(scores, score), append(types, typ)
	}
	add("<unk>", 0, 2) // unknown
	add("<s>", 0, 3)   // control
	add("</s>", 0, 3)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, 6) // byte
	}
	add("▁", -1, 1)
	for c := 'a'; c <= 'z'; c++ {
		add(string(c), -2, 1)
		add("▁"+string(c), -3, 1)
	}
	for _, w := range []string{"▁the", "▁hello", "▁ok", "▁is", "▁and"} {
		add(w, -4, 1)
	}
	return tokens, scores, types
}

type ggufWriter struct {
	w   *bufio.Writer
	err error
}

func (g *ggufWriter) put(v any) {
	if g.err == nil {
		g.err = binary.Write(g.w, binary.LittleEndian, v)
	}
}

func (g *ggufWriter) str(s string) {
	g.put(uint64(len(s)))
	if g.err == nil {
		_, g.err = g.w.WriteString(s)
	}
}

func (g *ggufWriter) kv(key string, typ uint32, v any) {
	g.str(key)
	g.put(typ)
	switch x := v.(type) {
	case string:
		g.str(x)
	case []string:
		g.put(uint32(ggufString))
		g.put(uint64(len(x)))
		for _, s := range x {
			g.str(s)
		}
	case []float32:
		g.put(uint32(ggufFloat32))
		g.put(uint64(len(x)))
		g.put(x)
	case []int32:
		g.put(uint32(ggufInt32))
		g.put(uint64(len(x)))
		g.put(x)
	default:
		g.put(x)
	}
}

type tensor struct {
	name string
	dims []uint64 // GGUF order: the fastest-moving dimension first
	norm bool     // a norm weight: all ones
}

func (t tensor) elems() uint64 {
	n := uint64(1)
	for _, d := range t.dims {
		n *= d
	}
	return n
}

// WriteTinyGGUF writes the tiny model to path: GGUF v3, llama
// architecture, all F32, random weights from a fixed seed (the same bytes
// every time).
func WriteTinyGGUF(path string) error {
	tokens, scores, types := tinyVocab()
	nv := uint64(len(tokens))
	e, ff := uint64(tinyEmbd), uint64(tinyFF)
	tensors := []tensor{
		{name: "token_embd.weight", dims: []uint64{e, nv}},
		{name: "output_norm.weight", dims: []uint64{e}, norm: true},
		{name: "output.weight", dims: []uint64{e, nv}},
	}
	for i := range tinyLayers {
		p := fmt.Sprintf("blk.%d.", i)
		tensors = append(tensors,
			tensor{name: p + "attn_norm.weight", dims: []uint64{e}, norm: true},
			tensor{name: p + "attn_q.weight", dims: []uint64{e, e}},
			tensor{name: p + "attn_k.weight", dims: []uint64{e, e}},
			tensor{name: p + "attn_v.weight", dims: []uint64{e, e}},
			tensor{name: p + "attn_output.weight", dims: []uint64{e, e}},
			tensor{name: p + "ffn_norm.weight", dims: []uint64{e}, norm: true},
			tensor{name: p + "ffn_gate.weight", dims: []uint64{e, ff}},
			tensor{name: p + "ffn_up.weight", dims: []uint64{e, ff}},
			tensor{name: p + "ffn_down.weight", dims: []uint64{ff, e}},
		)
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	g := &ggufWriter{w: bufio.NewWriter(f)}
	const alignment = 32
	g.put([4]byte{'G', 'G', 'U', 'F'})
	g.put(uint32(3))
	g.put(uint64(len(tensors)))
	kvs := []struct {
		key string
		typ uint32
		v   any
	}{
		{"general.architecture", ggufString, "llama"},
		{"general.name", ggufString, "ironclaw-tiny"},
		{"general.file_type", ggufUint32, uint32(0)}, // all F32
		{"general.alignment", ggufUint32, uint32(alignment)},
		{"llama.context_length", ggufUint32, uint32(tinyContext)},
		{"llama.embedding_length", ggufUint32, uint32(tinyEmbd)},
		{"llama.block_count", ggufUint32, uint32(tinyLayers)},
		{"llama.feed_forward_length", ggufUint32, uint32(tinyFF)},
		{"llama.attention.head_count", ggufUint32, uint32(tinyHeads)},
		{"llama.attention.head_count_kv", ggufUint32, uint32(tinyHeads)},
		{"llama.rope.dimension_count", ggufUint32, uint32(tinyEmbd / tinyHeads)},
		{"llama.rope.freq_base", ggufFloat32, float32(10000)},
		{"llama.attention.layer_norm_rms_epsilon", ggufFloat32, float32(1e-5)},
		{"llama.vocab_size", ggufUint32, uint32(nv)},
		{"tokenizer.ggml.model", ggufString, "llama"},
		{"tokenizer.ggml.tokens", ggufArray, tokens},
		{"tokenizer.ggml.scores", ggufArray, scores},
		{"tokenizer.ggml.token_type", ggufArray, types},
		{"tokenizer.ggml.unknown_token_id", ggufUint32, uint32(0)},
		{"tokenizer.ggml.bos_token_id", ggufUint32, uint32(1)},
		{"tokenizer.ggml.eos_token_id", ggufUint32, uint32(2)},
		{"tokenizer.ggml.add_bos_token", ggufBool, true},
		{"tokenizer.ggml.add_eos_token", ggufBool, false},
	}
	g.put(uint64(len(kvs)))
	for _, kv := range kvs {
		g.kv(kv.key, kv.typ, kv.v)
	}
	var offset uint64
	for _, t := range tensors {
		g.str(t.name)
		g.put(uint32(len(t.dims)))
		g.put(t.dims)
		g.put(uint32(0)) // F32
		g.put(offset)
		offset += pad(t.elems()*4, alignment)
	}
	if g.err != nil {
		f.Close()
		return g.err
	}
	// The data section starts aligned.
	pos, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		pos += int64(g.w.Buffered())
		g.put(make([]byte, pad(uint64(pos), alignment)-uint64(pos)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, t := range tensors {
		n := t.elems()
		vals := make([]float32, n)
		for i := range vals {
			if t.norm {
				vals[i] = 1
			} else {
				vals[i] = float32(rng.NormFloat64() * 0.05)
			}
		}
		g.put(vals)
		g.put(make([]byte, pad(n*4, alignment)-n*4))
	}
	if g.err == nil {
		g.err = g.w.Flush()
	}
	if g.err != nil {
		f.Close()
		return fmt.Errorf("ollamatest: writing %s: %w", path, g.err)
	}
	if err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pad(n, a uint64) uint64 { return (n + a - 1) / a * a }
