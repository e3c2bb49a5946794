package caddymodule

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strconv"

	"github.com/boombuler/barcode/qr"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// QR code sizes of GET /wxpay/orders/{out_trade_no}/qrcode.png?size=:
// the image is size × size pixels.
const (
	defaultQRSize = 256
	minQRSize     = 64
	maxQRSize     = 1024
)

// GET /wxpay/orders/{out_trade_no}/qrcode.png[?size=]: the code_url of a
// NATIVE order as a QR code (PNG), for the customer to scan with WeChat,
// while the order can be paid.
func (h *Handler) serveQRCode(w http.ResponseWriter, r *http.Request) {
	svc, err := h.app.serviceFor(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	size := defaultQRSize
	if s := r.URL.Query().Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < minQRSize || n > maxQRSize {
			h.fail(w, gateway.BadRequest("size %q: want a number of pixels from %d to %d", s, minQRSize, maxQRSize))
			return
		}
		size = n
	}
	codeURL, err := svc.NativeCodeURL(r.Context(), h.merchant, r.PathValue("out_trade_no"))
	if err != nil {
		h.fail(w, err)
		return
	}
	img, err := qrImage(codeURL, size)
	if err != nil {
		h.fail(w, err)
		return
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		h.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	// The code is the order's until it is paid or expires: not to be
	// kept by a shared cache.
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
}

// qrImage draws text as a QR code (error correction M, as WeChat's own
// codes) of size × size pixels: black modules on white, each module the
// same whole number of pixels, with the four-module quiet zone that
// scanners need, centred.
func qrImage(text string, size int) (image.Image, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("drawing the QR code: %w", err)
	}
	n := code.Bounds().Dx()
	const quiet = 4
	scale := size / (n + 2*quiet)
	if scale < 1 {
		return nil, gateway.BadRequest("size %d is too small for this code (%d modules with its quiet zone): ask for %d or more", size, n+2*quiet, n+2*quiet)
	}
	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	off := (size - n*scale) / 2
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			if code.At(x, y) != color.Black {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				row := img.Pix[(off+y*scale+dy)*img.Stride:]
				for dx := 0; dx < scale; dx++ {
					row[off+x*scale+dx] = 1
				}
			}
		}
	}
	return img, nil
}
