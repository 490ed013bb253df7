// Package geo provides small helpers for working with latitude/longitude coordinates.
package geo

import (
	"errors"
	"math"
)

// EarthRadiusKm is the mean radius of the Earth in kilometres.
const EarthRadiusKm = 6371.0

// Point is a position in decimal degrees.
type Point struct {
	Lat float64
	Lon float64
}

// ErrInvalidPoint is returned when a latitude or longitude is out of range.
var ErrInvalidPoint = errors.New("geo: latitude must be in [-90, 90] and longitude in [-180, 180]")

// Validate reports whether p is a valid coordinate.
func (p Point) Validate() error {
	if p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 {
		return ErrInvalidPoint
	}
	return nil
}

func radians(deg float64) float64 { return deg * math.Pi / 180 }

// DistanceKm returns the great-circle distance between a and b using the haversine formula.
func DistanceKm(a, b Point) float64 {
	dLat := radians(b.Lat - a.Lat)
	dLon := radians(b.Lon - a.Lon)
	h := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(radians(a.Lat))*math.Cos(radians(b.Lat))*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(h))
}

// Nearest returns the index of the point in candidates closest to origin, or -1 if empty.
func Nearest(origin Point, candidates []Point) int {
	best, bestDist := -1, math.Inf(1)
	for i, c := range candidates {
		if d := DistanceKm(origin, c); d < bestDist {
			best, bestDist = i, d
		}
	}
	return best
}

// Within returns the points of candidates no farther than radiusKm from origin.
func Within(origin Point, candidates []Point, radiusKm float64) []Point {
	var out []Point
	for _, c := range candidates {
		if DistanceKm(origin, c) <= radiusKm {
			out = append(out, c)
		}
	}
	return out
}
