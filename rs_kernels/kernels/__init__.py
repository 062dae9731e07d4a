"""The Triton kernels of the ops, one file per thing computed; each file also holds its launcher.

  assign.py          cosine scores of snippets against per-video centres, softmax over the centres,
                     and the per-video sums of an assignment step (Z^T x, sum Z, Z^T Z), forward
                     and backward (EM attention, the random walk's pass 1 and its backward)
  mix.py             each row mixed with its video's (C, D) matrix, out = z M_b (the walk's pass 2,
                     the segment matmul's backward)
  segment_matmul.py  per-video W^T X for given weights (the segment matmul, the walk's dU = Z gO)
  reduce.py          the fixed-order sum of per-block partial rows into per-video rows
  common.py          the @triton.jit helpers and launch settings they share
  launch.py          what the ops' host code needs without importing Triton: block size, warps,
                     accumulation dtype, buffers, device checks

Nothing here is imported until an op takes its Triton path (``rs_kernels`` works without Triton).

Layout and determinism
  * packed rows: video b owns rows cu[b]:cu[b+1] of x (N, D); T blocks of BLOCK_T rows never
    straddle two videos. The grid is one program per (video, T block), enumerated by the batch's
    block table (``rs_kernels.varlen.Varlen.block_table``, sized from the host offsets: no sync).
  * per-video centres are padded to (B, CMAX, D) (EM: CMAX = K; walk: CMAX = max M_b, with the
    count of video b in ccu) and padded inside the kernels to CP >= 16 rows, masked.
  * per-video sums: each program writes its block's partial row; ``reduce.segment_reduce`` adds the
    partial rows of each video in block order. No atomics anywhere, so results are bitwise
    reproducible (fixed block sizes: no autotuning, which would change the summation order from
    one process to the next).
  * fp32 accumulation (fp64 when the inputs are fp64, for gradcheck); tl.dot in tf32x3 for fp32
    (fp32-accurate on tensor cores), ieee for fp64. Every tl.dot names out_dtype=ACC: Triton 3.6
    refuses an fp64 accumulator whose dtype the call leaves at its fp32 default.
  * an argument a launch does not need is passed as None, with a constexpr flag saying so.
"""
