/*
 * Non-blocking gets and puts from C (as Global Arrays' NGA_NbGet / NGA_NbPut / NGA_NbWait):
 * each rank writes the rows of the next rank with two puts in flight at once, polling them
 * with juxmem_test while it fills its next buffer; after the release, the version is acquired
 * without waiting (juxmem_array_acquire_read_nb), then each rank starts a get
 * of the whole field (into a buffer with padded rows) and one of the previous rank's rows,
 * "computes" meanwhile, waits, and checks every element. A buffer belongs to its request until
 * juxmem_wait or juxmem_test says the request ended.
 *
 * Usage: mpirun -np N nonblocking   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
 * Prints "NONBLOCKING requests=R wrong=W" on rank 0 (W: elements not as written; 0).
 */
#include <juxmem.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 96, COLS = 50, PAD = 3 };

#define CHECK(call)                                                                       \
  do {                                                                                    \
    juxmem_status s_ = (call);                                                            \
    if (s_ != JUXMEM_OK) {                                                                \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, juxmem_strerror(s_),                 \
              juxmem_last_error_message());                                               \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                       \
    }                                                                                     \
  } while (0)

static double value(uint64_t row, uint64_t col) { return (double)row * 1000.0 + (double)col; }

int main(int argc, char **argv) {
  int provided, rank, nprocs;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
  struct juxmem_context *ctx = NULL;
  CHECK(juxmem_init(MPI_COMM_WORLD, &ctx));

  const uint64_t shape[2] = {ROWS, COLS}, grid[2] = {(uint64_t)nprocs, 1};
  const juxmem_dist block[2] = {JUXMEM_BLOCK, JUXMEM_BLOCK};
  struct juxmem_layout *rows = NULL;
  CHECK(juxmem_layout_new(2, shape, block, NULL, grid, &rows));
  struct juxmem_array *field = NULL;
  CHECK(juxmem_array_create(ctx, "nb-c/field", JUXMEM_TYPE_DOUBLE, rows, NULL, &field));

  /* The next rank's rows (block rows: rank r holds rows [r*ROWS/n, (r+1)*ROWS/n)), in two
   * halves, both in flight; the second buffer is filled while the first put goes. */
  const uint64_t per = ROWS / (uint64_t)nprocs, next = (uint64_t)(rank + 1) % (uint64_t)nprocs;
  const uint64_t first = next * per, last = next == (uint64_t)nprocs - 1 ? ROWS - 1 : first + per - 1;
  const uint64_t mid = first + (last - first) / 2;
  long requests = 0;
  CHECK(juxmem_array_acquire(field, 60.0));
  double *top = malloc(sizeof(double) * (mid - first + 1) * COLS);
  double *bottom = malloc(sizeof(double) * (last - mid) * COLS);
  for (uint64_t i = first; i <= mid; i++)
    for (uint64_t j = 0; j < COLS; j++) top[(i - first) * COLS + j] = value(i, j);
  juxmem_request *put_top = NULL, *put_bottom = NULL;
  const uint64_t top_lo[2] = {first, 0}, top_hi[2] = {mid, COLS - 1};
  CHECK(juxmem_array_put_nb(field, top_lo, top_hi, top, NULL, &put_top));
  for (uint64_t i = mid + 1; i <= last; i++)
    for (uint64_t j = 0; j < COLS; j++) bottom[(i - mid - 1) * COLS + j] = value(i, j);
  const uint64_t bottom_lo[2] = {mid + 1, 0}, bottom_hi[2] = {last, COLS - 1};
  CHECK(juxmem_array_put_nb(field, bottom_lo, bottom_hi, bottom, NULL, &put_bottom));
  requests += 2;
  int done = 0;
  while (!done) CHECK(juxmem_test(&put_top, &done)); /* frees it once done */
  CHECK(juxmem_wait(&put_bottom, 60.0));
  if (put_top || put_bottom) {
    fprintf(stderr, "a completed request was not set to NULL\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  CHECK(juxmem_wait(&put_top, 1.0)); /* a NULL request: nothing to wait for */
  uint64_t version = 0;
  CHECK(juxmem_array_release(field, &version));

  /* The version is acquired without waiting (each rank fetches its part meanwhile); the
   * reads are started together, computed over meanwhile, then checked. */
  juxmem_request *acquired = NULL;
  CHECK(juxmem_array_acquire_read_nb(field, JUXMEM_EXACTLY, version, 60.0, &acquired));
  requests += 1;
  double work = 0.0;
  for (int k = 1; k <= 100000; k++) work += 1.0 / k; /* the computation it overlaps */
  CHECK(juxmem_wait(&acquired, 0.0));                /* collective */
  uint64_t held = 0;
  CHECK(juxmem_array_version(field, &held));
  if (held != version) {
    fprintf(stderr, "acquire_read_nb holds version %llu, not %llu\n", (unsigned long long)held,
            (unsigned long long)version);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const uint64_t ld[1] = {COLS + PAD};
  double *all = malloc(sizeof(double) * ROWS * (COLS + PAD));
  for (uint64_t k = 0; k < (uint64_t)ROWS * (COLS + PAD); k++) all[k] = -1.0;
  const uint64_t prev = (uint64_t)(rank + nprocs - 1) % (uint64_t)nprocs;
  const uint64_t p_first = prev * per, p_last = prev == (uint64_t)nprocs - 1 ? ROWS - 1 : p_first + per - 1;
  double *theirs = malloc(sizeof(double) * (p_last - p_first + 1) * COLS);
  juxmem_request *get_all = NULL, *get_theirs = NULL;
  const uint64_t lo[2] = {0, 0}, hi[2] = {ROWS - 1, COLS - 1};
  const uint64_t p_lo[2] = {p_first, 0}, p_hi[2] = {p_last, COLS - 1};
  CHECK(juxmem_array_get_nb(field, lo, hi, all, ld, &get_all));
  CHECK(juxmem_array_get_nb(field, p_lo, p_hi, theirs, NULL, &get_theirs));
  requests += 2;
  for (int k = 1; k <= 100000; k++) work += 1.0 / k; /* the computation they overlap */
  CHECK(juxmem_wait(&get_theirs, 0.0));
  CHECK(juxmem_wait(&get_all, 60.0));
  long wrong = 0;
  for (uint64_t r = 0; r < ROWS; r++) {
    for (uint64_t c = 0; c < COLS; c++)
      if (all[r * (COLS + PAD) + c] != value(r, c)) wrong++;
    for (uint64_t c = COLS; c < COLS + PAD; c++)
      if (all[r * (COLS + PAD) + c] != -1.0) wrong++; /* the padding is not written */
  }
  for (uint64_t r = p_first; r <= p_last; r++)
    for (uint64_t c = 0; c < COLS; c++)
      if (theirs[(r - p_first) * COLS + c] != value(r, c)) wrong++;
  CHECK(juxmem_array_release_read(field));

  long total = 0, all_requests = 0;
  MPI_Reduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&requests, &all_requests, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("NONBLOCKING requests=%ld wrong=%ld (work %.3f)\n", all_requests, total, work);

  free(theirs);
  free(all);
  free(bottom);
  free(top);
  juxmem_array_close(field);
  juxmem_layout_free(rows);
  CHECK(juxmem_finalize(ctx));
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
