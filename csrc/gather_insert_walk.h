// membank_gather_insert_'s walk of one class through a step's videos in batch order: the one
// piece of logic its CPU kernel (membank.cpp) and CUDA kernel (cuda/membank_cuda.cu) share, so
// the two cannot drift apart. It moves no rows: it says where each row of the output comes from.
//
// The spec (rs_kernels/reference.py) is the loop "for each video b: gather its classes, then
// insert its K candidates". Class c's S slots are tracked as entries (key, source row, zeroed),
// in slot order. Video b with the class first reads the filled entries 0..count-1; then every
// video b (with the class or not) inserts, as membank_insert_topk_ on that video alone does: a
// stable sort by key, descending, of the S entries followed by the video's K candidates if it
// has the class (a video without it adds only dead candidates, which rank after every slot);
// the first S stay, the count grows by K (at most S), and entries past the count become unfilled
// slots: key -inf (dead, as the insert ranks them) and their row times zero.
#pragma once

#include <cstdint>
#include <limits>

#ifdef __CUDACC__
#define RS_HOST_DEVICE __host__ __device__
#else
#define RS_HOST_DEVICE
#endif

namespace rs_kernels {

// A row source: row r of the concatenation [bank (C*S rows); cand (B*K rows)] (the reference's
// `rows`), as r when the row is copied and as ~r (negative) when it is multiplied by zero.
RS_HOST_DEVICE inline int64_t encode_source(int64_t row, bool zeroed) { return zeroed ? ~row : row; }
RS_HOST_DEVICE inline bool source_is_zeroed(int64_t source) { return source < 0; }
RS_HOST_DEVICE inline int64_t row_of_source(int64_t source) { return source < 0 ? ~source : source; }

template <typename acc_t>
struct WalkEntry {
  acc_t key;      // the score; -inf for an unfilled slot
  int64_t row;    // where its bits come from, in [bank; cand]
  bool zeroed;    // multiplied by zero on the way (an unfilled slot's row, as the insert writes it)
};

template <typename scalar_t>
struct GatherInsertWalk {
  const int64_t* row_offset;    // (B, C): where video b's rows of class c start in y
  const scalar_t* cand_scores;  // (B, K, C)
  const bool* labels;           // (B, C)
  int64_t n_class, slots, batch, k;
  scalar_t* scores;             // (C, S): read, then overwritten with the final scores
  int64_t* count;               // (C,): read, then overwritten with the final count
  int64_t* y_source;            // (rows,): the source of each row of y
  int64_t* bank_source;         // (C, S): the source of each final slot
};

// Walks class c (batch >= 1). pool: scratch room for S + K entries. Reads class c's scores and
// count before writing them, so the walks of different classes may run in parallel.
template <typename acc_t, typename scalar_t>
RS_HOST_DEVICE void walk_class_in_video_order(const GatherInsertWalk<scalar_t>& w, int64_t c, WalkEntry<acc_t>* pool) {
  const int64_t slots = w.slots, k = w.k, n_class = w.n_class;
  const acc_t dead = -std::numeric_limits<acc_t>::infinity();
  int64_t count = w.count[c];
  for (int64_t s = 0; s < slots; ++s)
    pool[s] = {s < count ? static_cast<acc_t>(w.scores[c * slots + s]) : dead, c * slots + s, false};
  for (int64_t b = 0; b < w.batch; ++b) {
    const bool live = w.labels[b * n_class + c];
    int64_t n = slots;
    if (live) {
      int64_t* y = w.y_source + w.row_offset[b * n_class + c];
      for (int64_t r = 0; r < count; ++r) y[r] = encode_source(pool[r].row, pool[r].zeroed);
      for (int64_t j = 0; j < k; ++j)
        pool[n++] = {static_cast<acc_t>(w.cand_scores[(b * k + j) * n_class + c]), n_class * slots + b * k + j, false};
      count = count + k < slots ? count + k : slots;
    }
    for (int64_t i = 1; i < n; ++i) {  // insertion sort: an entry passes only strictly lower keys (stable)
      const WalkEntry<acc_t> e = pool[i];
      int64_t j = i;
      for (; j > 0 && e.key > pool[j - 1].key; --j) pool[j] = pool[j - 1];
      pool[j] = e;
    }
    for (int64_t r = count; r < slots; ++r) pool[r].key = dead, pool[r].zeroed = true;
  }
  for (int64_t r = 0; r < slots; ++r) {
    w.bank_source[c * slots + r] = encode_source(pool[r].row, pool[r].zeroed);
    w.scores[c * slots + r] = r < count ? static_cast<scalar_t>(pool[r].key) : static_cast<scalar_t>(0);
  }
  w.count[c] = count;
}

}  // namespace rs_kernels
