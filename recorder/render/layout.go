package render

// Tile is a rectangle of the composed picture, in pixels from the top left.
type Tile struct {
	X, Y, W, H int
}

// Tile aspect ratios (height / width) allowed by BEST_FIT: from 16:9
// landscape to 2:3 portrait.
const (
	minTileRatio = 9.0 / 16.0
	maxTileRatio = 3.0 / 2.0
)

// BestFitLayout lays n videos out on a width×height picture (pixels) as
// OpenVidu's BEST_FIT layout does ("a grid layout where all the videos are
// evenly distributed", REST API docs): the grid is the column count whose
// tiles cover the most area, as opentok-layout-js chooses it (the layout
// library OpenVidu's recording docs use), tiles keeping a height/width
// ratio between 9/16 and 3/2; rows are centred, and so is the last,
// shorter row. Each video fills its tile, cropped to its shape (CSS
// object-fit: cover). Positions and sizes are even (H.264 4:2:0). Tiles are
// returned in the order of the videos; n <= 0 gives none.
func BestFitLayout(n, width, height int) []Tile {
	if n <= 0 {
		return nil
	}
	bestCols, bestW, bestH, bestArea := 1, 0, 0, -1
	for cols := 1; cols <= n; cols++ {
		rows := (n + cols - 1) / cols
		w, h := float64(width/cols), float64(height/rows)
		switch ratio := h / w; {
		case ratio > maxTileRatio:
			h = w * maxTileRatio
		case ratio < minTileRatio:
			w = h / minTileRatio
		}
		tw, th := int(w)&^1, int(h)&^1
		if area := tw * th * n; area > bestArea {
			bestCols, bestW, bestH, bestArea = cols, tw, th, area
		}
	}
	cols := bestCols
	rows := (n + cols - 1) / cols
	top := (height - rows*bestH) / 2 &^ 1
	tiles := make([]Tile, 0, n)
	for i := 0; i < n; i++ {
		row, col := i/cols, i%cols
		inRow := cols
		if row == rows-1 {
			inRow = n - cols*(rows-1)
		}
		left := (width - inRow*bestW) / 2 &^ 1
		tiles = append(tiles, Tile{X: left + col*bestW, Y: top + row*bestH, W: bestW, H: bestH})
	}
	return tiles
}
