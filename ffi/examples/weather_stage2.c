/*
 * Stage 2 of the weather pipeline, in C: a drop-in replacement for
 * `weather --stage 2` (examples/weather.rs) in the same federation.
 *
 * Opens day 1 ("forecast/day1/t") in cyclic rows over this job's ranks (automatic
 * redistribution from whatever layout stage 1 wrote), computes day 2 row by row (implicit
 * diffusion along each row, then relaxation toward the row's climatology: the same arithmetic
 * as examples/weather/model.rs), and releases "forecast/day2/t" with a copy in cluster A3.
 *
 * Usage: mpirun -np 3 weather_stage2 [CYCLES]   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
 */
#include <juxmem.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Must match Params::demo() in examples/weather/model.rs. */
enum { ROWS = 480, COLS = 400 };
static const double ROW_DIFFUSION = 2.0;
static const double RELAXATION = 0.1;
static const double WAIT_SECONDS = 120.0;

#define CHECK(call)                                                                       \
  do {                                                                                    \
    juxmem_status s_ = (call);                                                            \
    if (s_ != JUXMEM_OK) {                                                                \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, juxmem_strerror(s_),                 \
              juxmem_last_error_message());                                               \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                       \
    }                                                                                     \
  } while (0)

static double climatology(uint64_t row) { return 300.0 - 40.0 * (double)row / (double)ROWS; }

/* Day 2 on one row: the Thomas algorithm with fixed ends, then relaxation. */
static void row_update(uint64_t global_row, double *row, double *scratch, double *rhs) {
  const size_t n = COLS;
  const double a = ROW_DIFFUSION;
  const double diag = 1.0 + 2.0 * a;
  memset(scratch, 0, n * sizeof(double));
  memcpy(rhs, row, n * sizeof(double));
  rhs[1] += a * row[0];
  rhs[n - 2] += a * row[n - 1];
  scratch[1] = -a / diag;
  rhs[1] /= diag;
  for (size_t i = 2; i < n - 1; i++) {
    double m = diag + a * scratch[i - 1];
    scratch[i] = -a / m;
    rhs[i] = (rhs[i] + a * rhs[i - 1]) / m;
  }
  row[n - 2] = rhs[n - 2];
  for (size_t i = n - 3; i >= 1; i--) {
    row[i] = rhs[i] - scratch[i] * row[i + 1];
  }
  double clim = climatology(global_row);
  for (size_t i = 0; i < n; i++) {
    row[i] += RELAXATION * (clim - row[i]);
  }
}

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  uint64_t cycles = argc > 1 ? strtoull(argv[1], NULL, 10) : 3;

  juxmem_context *ctx;
  CHECK(juxmem_init(MPI_COMM_WORLD, &ctx));
  uint64_t rank, size;
  CHECK(juxmem_context_rank(ctx, &rank, &size));

  uint64_t shape[2] = {ROWS, COLS};
  juxmem_dist kinds[2] = {JUXMEM_CYCLIC, JUXMEM_BLOCK};
  uint64_t grid[2] = {size, 1};
  juxmem_layout *rows_layout;
  CHECK(juxmem_layout_new(2, shape, kinds, NULL, grid, &rows_layout));
  if (rank == 0) {
    printf("stage 2 (C): %llu ranks, field held in cyclic rows\n", (unsigned long long)size);
  }

  juxmem_array *day1, *day2;
  CHECK(juxmem_array_open(ctx, "forecast/day1/t", JUXMEM_TYPE_DOUBLE, rows_layout, WAIT_SECONDS,
                          &day1));
  juxmem_array_options opts;
  CHECK(juxmem_array_options_default(&opts));
  opts.clusters = 2;
  opts.replicate_to = "A3";
  opts.max_versions = 2;
  opts.readers = 1; /* stage 3 may open it after this stage released a few versions */
  CHECK(juxmem_array_create(ctx, "forecast/day2/t", JUXMEM_TYPE_DOUBLE, rows_layout, &opts, &day2));

  uint64_t local_len;
  CHECK(juxmem_layout_local_len(rows_layout, rank, &local_len));
  double *rows = malloc(local_len * sizeof(double) + 1);
  double *scratch = malloc(COLS * sizeof(double));
  double *rhs = malloc(COLS * sizeof(double));
  if (!rows || !scratch || !rhs) MPI_Abort(MPI_COMM_WORLD, 1);

  for (uint64_t cycle = 0; cycle < cycles; cycle++) {
    uint64_t version;
    CHECK(juxmem_array_acquire_read(day1, JUXMEM_EXACTLY, cycle + 1, WAIT_SECONDS, &version));
    const void *data;
    uint64_t local_shape[2];
    CHECK(juxmem_array_local_read(day1, &data, local_shape, NULL));
    memcpy(rows, data, local_len * sizeof(double));
    CHECK(juxmem_array_release_read(day1));

    for (uint64_t lr = 0; lr < local_shape[0]; lr++) {
      uint64_t index[2];
      CHECK(juxmem_layout_global_index(rows_layout, rank, lr * COLS, index));
      row_update(index[0], rows + lr * COLS, scratch, rhs);
    }

    // The whole local part is written: nothing to load.
    CHECK(juxmem_array_acquire_overwrite(day2, WAIT_SECONDS));
    void *out;
    CHECK(juxmem_array_local_write(day2, &out, local_shape, NULL));
    memcpy(out, rows, local_len * sizeof(double));
    uint64_t released;
    CHECK(juxmem_array_release(day2, &released));
    if (rank == 0) {
      printf("stage 2 (C) cycle %llu: day 1 version %llu received, day 2 released as version %llu\n",
             (unsigned long long)cycle, (unsigned long long)version,
             (unsigned long long)released);
      fflush(stdout);
    }
  }

  free(rows);
  free(scratch);
  free(rhs);
  juxmem_array_close(day1);
  juxmem_array_close(day2);
  juxmem_layout_free(rows_layout);
  CHECK(juxmem_finalize(ctx));
  juxmem_context_free(ctx);
  MPI_Finalize();
  return 0;
}
