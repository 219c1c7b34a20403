"""Nearest access point of many moving points: a uniform grid of candidate lists.

Attachment asks, every step, for the nearest of ``A`` fixed sites (the access points) to
each of ``n`` moving points. The sites do not move, so :class:`NearestGrid` does the
geometry once: it lays a uniform grid over the sites and the area the points move in
(about :data:`CELLS_PER_SITE` cells per site, smaller where the sites cluster, at most
eight times as many cells) and keeps, for every cell, the sites that
can be nearest to some point of that cell (a superset of the Voronoi regions meeting it,
see below). A query is then arithmetic on the coordinates (the cell of each point), a
gather of its cell's candidates and a small argmin: a fixed number of NumPy passes over
the points, no Python work per point and no threads to start.

Candidates of a cell ``C`` (an axis-aligned rectangle, slightly inflated so that points
rounded into it lie inside it): a site ``a`` can be nearest to a point ``p`` of ``C``
only if ``mindist(a, C) <= min_b maxdist(b, C)``, because ``dist(a, p) >= mindist(a, C)``
and the best site ``b`` is at most ``maxdist(b, C)`` from ``p``. The grid keeps exactly
the sites passing this test (found among the sites within ``d_nn(centre) + 2 * half
diagonal`` of the cell's centre, which contain them all), less those that another
candidate is nearer to at all four corners. Cells of one or two candidates are the
common case and every point is compared with its cell's first two; cells of more are
grouped by how many (up to 4, 8, 16...; padded with the first candidate) so a dense
cluster of sites costs only its own points.

Exactness: the answer is the site of the smallest Euclidean distance
``sqrt(dx*dx + dy*dy)`` (the formula SciPy's KD-tree evaluates, so distances are the same
to the bit), ties broken by the lowest site index. Points outside the grid (the grid
covers the sites and the area given, so only points that left it) are answered by a
KD-tree query of a few nearest sites, checked for ties, and by brute force where the
few do not settle it.

References:
    J. L. Bentley, B. W. Weide, A. C. Yao, "Optimal expected-time algorithms for closest
    point problems", ACM TOMS 6(4), 1980 (cell techniques for nearest neighbours).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: grid cells per site: smaller cells have fewer candidates but cost memory and set-up
CELLS_PER_SITE = 32.0
#: at most this many cells, whatever the layout
MAX_CELLS = 1 << 20
#: relative slack of the candidate test (a superset is always correct; this absorbs rounding)
_REL_SLACK = 1e-9


class NearestGrid:
    """Exact nearest site of many points, for fixed sites and moving points.

    Parameters:
        sites_xy_m: ``(A, 2)`` positions of the sites (``A >= 1``; duplicates allowed).
        bounds_m: optional ``(xmin, ymin, xmax, ymax)`` of the area the points move in;
            the grid covers it and the sites (points outside are still answered exactly,
            more slowly).
        cells_per_site: grid cells per site (about).

    Raises:
        ValueError: no sites, or sites that are not finite.

    Examples:
        >>> grid = NearestGrid(np.array([[0.0, 0.0], [10.0, 0.0]]))
        >>> idx, dist = grid.query(np.array([[1.0, 1.0], [7.0, 0.0], [5.0, 3.0]]))
        >>> idx.tolist(), dist.round(3).tolist()
        ([0, 1, 0], [1.414, 3.0, 5.831])
    """

    def __init__(
        self,
        sites_xy_m: np.ndarray,
        bounds_m: np.ndarray | None = None,
        *,
        cells_per_site: float = CELLS_PER_SITE,
    ):
        pts = np.ascontiguousarray(np.asarray(sites_xy_m, dtype=float).reshape(-1, 2))
        if pts.shape[0] == 0:
            raise ValueError("NearestGrid: no sites")
        if not np.isfinite(pts).all():
            raise ValueError("NearestGrid: site positions must be finite")
        self.sites = pts
        self._sx, self._sy = pts[:, 0].copy(), pts[:, 1].copy()
        self.tree = cKDTree(pts)
        lo, hi = pts.min(0), pts.max(0)
        if bounds_m is not None:
            b = np.asarray(bounds_m, dtype=float)
            if np.isfinite(b).all():
                lo, hi = np.minimum(lo, b[:2]), np.maximum(hi, b[2:])
        span = hi - lo
        # a degenerate side (one site, collinear sites) gets the other side's size
        side = max(float(span.max()), 1.0)
        span = np.where(span > 1e-9 * side, span, side)
        lo, hi = lo - 1e-6 * span, lo + span * (1 + 1e-6)
        span = hi - lo
        a = pts.shape[0]
        max_cells = min(MAX_CELLS, max(1024, 8 * cells_per_site * a))
        n_cells = min(max(1.0, cells_per_site * a), max_cells)
        s = float(np.sqrt(span[0] * span[1] / n_cells))
        if a > 1:  # clustered sites: cells as small as the typical spacing asks for
            d_nn = np.asarray(self.tree.query(pts, k=2)[0])[:, 1]
            d_med = float(np.median(d_nn[d_nn > 0])) if (d_nn > 0).any() else s
            s = min(s, d_med / (0.5 * np.sqrt(cells_per_site)))
        s = max(s, float(span.max()) / np.sqrt(max_cells))  # a thin area: few cells across
        nx, ny = (int(np.ceil(v / s)) for v in span)
        while nx * ny > max_cells:
            s *= 1.25
            nx, ny = (int(np.ceil(v / s)) for v in span)
        self.x0, self.y0, self.cell_m, self.nx, self.ny = float(lo[0]), float(lo[1]), s, nx, ny
        self._inv = 1.0 / s
        self._build()

    # --- set-up ------------------------------------------------------------------------
    def _build(self) -> None:
        nx, ny, s = self.nx, self.ny, self.cell_m
        cells = np.arange(nx * ny)  # cell c = iy * nx + ix
        ix, iy = (cells % nx).astype(float), (cells // nx).astype(float)
        # cells inflated by more than the rounding of a point's cell index
        pad = 1e-7 * s + 1e-12 * (abs(self.x0) + abs(self.y0) + (nx + ny) * s)
        x_lo, y_lo = self.x0 + ix * s - pad, self.y0 + iy * s - pad
        x_hi, y_hi = x_lo + s + 2 * pad, y_lo + s + 2 * pad
        cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
        half_diag = np.hypot(s / 2 + pad, s / 2 + pad)
        d_nn, _ = self.tree.query(np.column_stack([cx, cy]))
        radius = (np.asarray(d_nn) + 2 * half_diag) * (1 + _REL_SLACK) + pad
        balls = self.tree.query_ball_point(np.column_stack([cx, cy]), radius)
        counts = np.fromiter((len(b) for b in balls), dtype=np.int64, count=len(balls))
        cell = np.repeat(np.arange(nx * ny), counts)
        site = np.fromiter((j for b in balls for j in b), dtype=np.int64, count=int(counts.sum()))
        # sort by cell, then site index (ties go to the lowest index)
        order = np.lexsort((site, cell))
        cell, site = cell[order], site[order]
        ax, ay = self._sx[site], self._sy[site]
        x0c, x1c, y0c, y1c = x_lo[cell], x_hi[cell], y_lo[cell], y_hi[cell]
        gap_x = np.maximum(np.maximum(x0c - ax, ax - x1c), 0.0)
        gap_y = np.maximum(np.maximum(y0c - ay, ay - y1c), 0.0)
        mind = np.hypot(gap_x, gap_y)  # nearest point of the cell
        far_x = np.maximum(np.abs(ax - x0c), np.abs(ax - x1c))
        far_y = np.maximum(np.abs(ay - y0c), np.abs(ay - y1c))
        maxd = np.hypot(far_x, far_y)  # farthest corner
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        best_max = np.minimum.reduceat(maxd, starts)  # every cell has >= 1 site in its ball
        keep = mind <= best_max[cell] * (1 + _REL_SLACK) + pad
        cell, site = cell[keep], site[keep]
        cell, site = self._drop_dominated(cell, site, x_lo, y_lo, x_hi, y_hi)
        k = np.bincount(cell, minlength=nx * ny)
        first = np.concatenate([[0], np.cumsum(k)[:-1]])
        self.candidates_per_cell = k
        self.cell_first = site[first].astype(np.intp)  # the lowest-index candidate
        self.cell_second = site[first + (k > 1)].astype(np.intp)  # the next (or the first)
        # the third candidate on: cells of 3-4 candidates in one table, of 5-8 in the
        # next..., padded with the first candidate
        width = 1 << np.ceil(np.log2(np.maximum(k, 1))).astype(np.int64)
        self.widths = sorted({int(w) for w in np.unique(width[k > 2])})
        self.cell_group = np.zeros(nx * ny, dtype=np.int8)  # 0: at most two candidates
        self.cell_row = np.zeros(nx * ny, dtype=np.intp)
        self.tables: list[np.ndarray] = []  # (w, cells of the group), column-wise
        for g, w in enumerate(self.widths, start=1):
            cells = np.flatnonzero((width == w) & (k > 2))
            self.cell_group[cells] = g
            self.cell_row[cells] = np.arange(cells.size)
            col = np.where(np.arange(w)[:, None] < k[cells][None, :], np.arange(w)[:, None], 0)
            self.tables.append(np.ascontiguousarray(site[first[cells][None, :] + col], np.intp))

    def _drop_dominated(
        self,
        cell: np.ndarray,
        site: np.ndarray,
        x_lo: np.ndarray,
        y_lo: np.ndarray,
        x_hi: np.ndarray,
        y_hi: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Drop candidate ``a`` of a cell where another candidate ``b`` is nearer at all
        four corners (by more than rounding): the cell then lies in ``b``'s half-plane,
        so ``a`` is nearest nowhere in it. Cells of more than 64 candidates keep all."""
        k = np.bincount(cell, minlength=self.nx * self.ny)
        first = np.concatenate([[0], np.cumsum(k)[:-1]])
        kc = k[cell]
        many = (kc > 1) & (kc <= 64)
        pa = np.flatnonzero(many)  # pair (a, b) = (pa, first[cell] + r) for r < k
        reps = kc[pa]
        a = np.repeat(pa, reps)
        starts = np.cumsum(reps) - reps
        b = first[cell[a]] + (np.arange(a.size) - np.repeat(starts, reps))
        off = a != b
        a, b = a[off], b[off]
        c = cell[a]
        ax, ay, bx, by = self._sx[site[a]], self._sy[site[a]], self._sx[site[b]], self._sy[site[b]]
        dominated = np.ones(a.size, dtype=bool)
        for cx, cy in ((x_lo, y_lo), (x_lo, y_hi), (x_hi, y_lo), (x_hi, y_hi)):
            px, py = cx[c], cy[c]
            da = (px - ax) ** 2 + (py - ay) ** 2
            db = (px - bx) ** 2 + (py - by) ** 2
            dominated &= da - db > 1e-6 * (da + db) + 1e-9 * self.cell_m**2
        drop = np.zeros(cell.size, dtype=bool)
        drop[a[dominated]] = True
        return cell[~drop], site[~drop]

    # --- queries -----------------------------------------------------------------------
    def query(self, xy_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the nearest site and the distance to it, for every point.

        Parameters:
            xy_m: ``(n, 2)`` positions.

        Returns:
            ``(idx, dist_m)``: ``int64`` indices into the sites, ties to the lowest
            index; ``float64`` Euclidean distances.
        """
        xy = np.asarray(xy_m, dtype=float).reshape(-1, 2)
        n = xy.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        x, y = np.ascontiguousarray(xy.T)  # contiguous columns: every pass below is faster
        fx = x - self.x0
        fx *= self._inv
        fy = y - self.y0
        fy *= self._inv
        # NaN fails these tests too
        if fx.min() >= 0 and fx.max() < self.nx and fy.min() >= 0 and fy.max() < self.ny:
            return self._inside(x, y, fx, fy)
        inside = (fx >= 0) & (fx < self.nx) & (fy >= 0) & (fy < self.ny)
        idx = np.empty(n, dtype=np.int64)
        dist = np.empty(n)
        sel = np.flatnonzero(inside)
        idx[sel], dist[sel] = self._inside(x[sel], y[sel], fx[sel], fy[sel])
        out = np.flatnonzero(~inside)
        idx[out], dist[out] = self._outside(xy[out])
        return idx, dist

    def _inside(
        self, x: np.ndarray, y: np.ndarray, fx: np.ndarray, fy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cell = fy.astype(np.intp)
        cell *= self.nx
        cell += fx.astype(np.intp)
        idx = self.cell_first[cell]
        d2 = self._d2(idx, x, y)
        other = self.cell_second[cell]  # the first again in cells of one candidate
        d2o = self._d2(other, x, y)
        nearer = d2o < d2  # strictly: ties stay with the lower index
        np.copyto(idx, other, where=nearer)
        np.minimum(d2, d2o, out=d2)  # the same (no NaN on the grid; equal values alike)
        if self.tables:
            group = self.cell_group[cell]
            many = np.flatnonzero(group)
            if many.size:
                self._improve(idx, d2, many, group[many], cell[many], x[many], y[many])
        return idx.astype(np.int64, copy=False), np.sqrt(d2, out=d2)

    def _d2(self, site: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Squared distance from each point to its ``site`` (SciPy's KD-tree formula)."""
        d2 = self._sx[site]
        d2 -= x
        d2 *= d2
        dy = self._sy[site]
        dy -= y
        dy *= dy
        d2 += dy
        return d2

    def _improve(
        self,
        idx: np.ndarray,
        d2: np.ndarray,
        many: np.ndarray,
        group: np.ndarray,
        cell: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
    ) -> None:
        """Replace ``idx``/``d2`` at ``many`` (points of cells of three candidates or
        more, nearest of the first two so far) by their nearest candidate. Candidates
        ascend by index and only a strictly nearer one replaces, so ties go to the
        lowest index."""
        for g, table in enumerate(self.tables, start=1):
            m = np.flatnonzero(group == g) if len(self.tables) > 1 else slice(None)
            pts = many[m]
            if pts.size == 0:
                continue
            cand = table[:, self.cell_row[cell[m]]]
            bi, best = idx[pts], d2[pts]
            xm, ym = x[m], y[m]
            for c in range(2, table.shape[0]):
                dc = self._d2(cand[c], xm, ym)
                nearer = dc < best
                np.copyto(bi, cand[c], where=nearer)
                np.copyto(best, dc, where=nearer)
            idx[pts], d2[pts] = bi, best

    def _outside(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points off the grid: a KD-tree query of a few nearest sites, checked for ties
        at the edge of the few (brute force for those points)."""
        a = self.sites.shape[0]
        k = min(a, 4)
        _, cand = self.tree.query(xy, k=k)
        cand = np.asarray(cand).reshape(len(xy), k)
        cand = np.where(cand < a, cand, 0)  # NaN positions come back with index a
        cand.sort(axis=1)  # ties go to the lowest index
        idx, d2 = self._argmin(cand, xy)
        if k < a:
            dxk = self._sx[cand] - xy[:, :1]
            dyk = self._sy[cand] - xy[:, 1:]
            far = (dxk * dxk + dyk * dyk).max(axis=1)
            unsure = np.flatnonzero(~(far > d2 * (1 + _REL_SLACK)))
            for lo in range(0, unsure.size, 512):  # brute force, 512 points at a time
                u = unsure[lo : lo + 512]
                full = np.broadcast_to(np.arange(a), (u.size, a))
                idx[u], d2[u] = self._argmin(full, xy[u])
        return idx, np.sqrt(d2)

    def _argmin(self, cand: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = self._sx[cand] - xy[:, :1]
        dy = self._sy[cand] - xy[:, 1:]
        d2 = dx * dx + dy * dy
        j = d2.argmin(axis=1)[:, None]
        return (
            np.take_along_axis(cand, j, axis=1)[:, 0].astype(np.int64),
            np.take_along_axis(d2, j, axis=1)[:, 0],
        )
