! Non-blocking gets and puts from Fortran (the C example is nonblocking.c; as Global Arrays'
! NGA_NbGet / NGA_NbPut / NGA_NbWait): each rank writes the columns of the next rank with two
! puts in flight at once, polling them with juxmem_test; after the release, the version is
! acquired without waiting (juxmem_array_acquire_read_nb), then each rank starts a
! get of the whole field (into a buffer with padded columns) and one of the previous rank's
! columns, computes meanwhile, waits, and checks every element. A buffer belongs to its request
! until juxmem_wait or juxmem_test says it ended: it is declared ASYNCHRONOUS.
!
! In Fortran order the field is F(NI, NJ); its columns are dealt over the ranks in blocks.
!
! Usage: mpirun -np N nonblocking_f   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
! Prints "NONBLOCKING requests=R wrong=W" on rank 0 (W: elements not as written; 0).
program nonblocking
  use, intrinsic :: iso_c_binding
  use mpi
  use juxmem
  implicit none

  integer, parameter :: NI = 50, NJ = 96, PAD = 3
  real(c_double), parameter :: WAIT = 60.0_c_double

  type(juxmem_context) :: ctx
  type(juxmem_layout) :: columns
  type(juxmem_array) :: field
  type(juxmem_request) :: put_left, put_right, get_all, get_theirs, acquired
  real(c_double), allocatable, target, asynchronous :: left(:, :), right(:, :), all(:, :), theirs(:, :)
  integer(c_int64_t) :: released
  integer :: ierr, provided, rank, nprocs, i, j, k, per, nxt, prv, first, last, mid, p_first, p_last
  integer :: wrong, total, requests, all_requests
  logical :: done
  real(c_double) :: work

  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided, ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  call juxmem_init(MPI_COMM_WORLD, ctx, ierr)
  call check('init')
  call juxmem_layout_new([int(NI, c_int64_t), int(NJ, c_int64_t)], [JUXMEM_BLOCK, JUXMEM_BLOCK], &
    [1_c_int64_t, int(nprocs, c_int64_t)], columns, ierr)
  call check('layout')
  call juxmem_array_create(ctx, 'nb-f/field', JUXMEM_TYPE_DOUBLE, columns, field, ierr)
  call check('create')

  ! The next rank's columns (rank r holds columns r*per+1 .. (r+1)*per), in two halves.
  per = NJ / nprocs
  nxt = mod(rank + 1, nprocs)
  call span(nxt, first, last)
  mid = first + (last - first) / 2
  requests = 0
  call juxmem_array_acquire(field, ierr, timeout=WAIT)
  call check('acquire')
  allocate (left(NI, first:mid), right(NI, mid + 1:last))
  call fill(left, first)
  call juxmem_array_put_nb(field, [1_c_int64_t, int(first, c_int64_t)], &
    [int(NI, c_int64_t), int(mid, c_int64_t)], left, put_left, ierr)
  call check('put_nb (left)')
  call fill(right, mid + 1)
  call juxmem_array_put_nb(field, [1_c_int64_t, int(mid + 1, c_int64_t)], &
    [int(NI, c_int64_t), int(last, c_int64_t)], right, put_right, ierr)
  call check('put_nb (right)')
  requests = requests + 2
  done = .false.
  do while (.not. done)
    call juxmem_test(put_left, done, ierr)
    call check('test')
  end do
  call juxmem_wait(put_right, ierr, timeout=WAIT)
  call check('wait (put)')
  call juxmem_array_release(field, ierr, released)
  call check('release')

  ! The version acquired without waiting (each rank fetches its part meanwhile); the reads
  ! started together, computed over meanwhile, then checked.
  call juxmem_array_acquire_read_nb(field, JUXMEM_EXACTLY, released, acquired, ierr, timeout=WAIT)
  call check('acquire_read_nb')
  requests = requests + 1
  work = 0
  do k = 1, 100000
    work = work + 1.0_c_double / k
  end do
  call juxmem_wait(acquired, ierr) ! collective
  call check('wait (acquire_read)')
  prv = mod(rank + nprocs - 1, nprocs)
  call span(prv, p_first, p_last)
  allocate (all(NI + PAD, NJ), theirs(NI, p_first:p_last))
  all = -1.0_c_double
  call juxmem_array_get_nb(field, [1_c_int64_t, 1_c_int64_t], [int(NI, c_int64_t), int(NJ, c_int64_t)], &
    all, get_all, ierr)
  call check('get_nb (all)')
  call juxmem_array_get_nb(field, [1_c_int64_t, int(p_first, c_int64_t)], &
    [int(NI, c_int64_t), int(p_last, c_int64_t)], theirs, get_theirs, ierr)
  call check('get_nb (theirs)')
  requests = requests + 2
  do k = 1, 100000
    work = work + 1.0_c_double / k
  end do
  call juxmem_wait(get_theirs, ierr)
  call check('wait (theirs)')
  call juxmem_wait(get_all, ierr, timeout=WAIT)
  call check('wait (all)')
  wrong = 0
  do j = 1, NJ
    do i = 1, NI
      if (all(i, j) /= value(i, j)) wrong = wrong + 1
    end do
    do i = NI + 1, NI + PAD
      if (all(i, j) /= -1.0_c_double) wrong = wrong + 1 ! the padding is not written
    end do
  end do
  do j = p_first, p_last
    do i = 1, NI
      if (theirs(i, j) /= value(i, j)) wrong = wrong + 1
    end do
  end do
  call juxmem_array_release_read(field, ierr)
  call check('release read')
  call MPI_Reduce(wrong, total, 1, MPI_INTEGER, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  call MPI_Reduce(requests, all_requests, 1, MPI_INTEGER, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  if (rank == 0) print '(a,i0,a,i0,a,f0.3,a)', 'NONBLOCKING requests=', all_requests, ' wrong=', &
    total, ' (work ', work, ')'

  call juxmem_array_close(field)
  call juxmem_layout_free(columns)
  call juxmem_finalize(ctx, ierr)
  call MPI_Finalize(ierr)
  if (rank == 0 .and. total /= 0) stop 1

contains

  ! The field's value at (i, j), global and 1-based.
  pure real(c_double) function value(i, j)
    integer, intent(in) :: i, j
    value = real(j, c_double) * 1000.0_c_double + real(i, c_double)
  end function

  ! The columns rank r holds (block columns; the last rank takes the rest).
  subroutine span(r, lo, hi)
    integer, intent(in) :: r
    integer, intent(out) :: lo, hi
    lo = r * per + 1
    hi = merge(NJ, lo + per - 1, r == nprocs - 1)
  end subroutine

  ! Columns j0, j0 + 1, ... of the field.
  subroutine fill(buf, j0)
    real(c_double), intent(out) :: buf(:, :)
    integer, intent(in) :: j0
    integer :: a, b
    do b = 1, size(buf, 2)
      do a = 1, size(buf, 1)
        buf(a, b) = value(a, j0 + b - 1)
      end do
    end do
  end subroutine

  subroutine check(what)
    character(len=*), intent(in) :: what
    integer :: ignored
    if (ierr /= JUXMEM_OK) then
      print '(a,a,a,i0,a,a)', 'nonblocking_f: ', what, ' failed: ', ierr, ': ', &
        juxmem_error_message()
      call MPI_Abort(MPI_COMM_WORLD, 1, ignored)
    end if
  end subroutine

end program
