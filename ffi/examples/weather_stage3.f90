! Stage 3 of the weather pipeline, in Fortran: a drop-in replacement for
! `weather --stage 3` (examples/weather.rs) in the same federation.
!
! Opens day 2 ("forecast/day2/t") in block-cyclic 16x16 tiles over this job's ranks
! (automatic redistribution from whatever layout stage 2 wrote), computes day 3 tile by tile
! (the separable smoothing T <- S T S^T of examples/weather/model.rs, same arithmetic), and
! releases "forecast/day3/t" (home plus a provider daemon of this cluster).
!
! In Fortran order the field is T(COLS, ROWS): column-major, 1-based, as juxmem's Fortran
! module maps it onto the row-major field the other stages see.
!
! Usage: mpirun -np 2 weather_stage3 [CYCLES]   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
program weather_stage3
  use, intrinsic :: iso_c_binding
  use mpi
  use juxmem
  implicit none

  ! Must match Params::demo() in examples/weather/model.rs.
  integer, parameter :: ROWS = 480, COLS = 400, TILE = 16
  real(c_double), parameter :: WAIT = 120.0_c_double

  type(juxmem_context) :: ctx
  type(juxmem_layout) :: tiles
  type(juxmem_array) :: day2, day3
  real(c_double), pointer :: field(:, :)
  real(c_double), allocatable :: part(:, :)
  integer :: ierr, provided, rank, nprocs, cycle, cycles, r0, c0, h, w, lrows, lcols
  integer(c_int64_t) :: version, released
  character(len=32) :: arg

  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided, ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  cycles = 3
  if (command_argument_count() >= 1) then
    call get_command_argument(1, arg)
    read (arg, *) cycles
  end if

  call juxmem_init(MPI_COMM_WORLD, ctx, ierr)
  call check(ierr, "juxmem_init")
  ! Fortran order: (columns, rows); the rows are spread over the ranks.
  call juxmem_layout_new([int(COLS, c_int64_t), int(ROWS, c_int64_t)], &
    [JUXMEM_BLOCK_CYCLIC, JUXMEM_BLOCK_CYCLIC], [1_c_int64_t, int(nprocs, c_int64_t)], tiles, &
    ierr, block_sizes=[int(TILE, c_int64_t), int(TILE, c_int64_t)])
  call check(ierr, "juxmem_layout_new")
  if (rank == 0) print '(a,i0,a)', 'stage 3 (Fortran): ', nprocs, ' ranks, field held in 16x16 tiles'

  call juxmem_array_open(ctx, 'forecast/day2/t', JUXMEM_TYPE_DOUBLE, tiles, day2, ierr, timeout=WAIT)
  call check(ierr, "juxmem_array_open(day2)")
  call juxmem_array_create(ctx, 'forecast/day3/t', JUXMEM_TYPE_DOUBLE, tiles, day3, ierr, &
    providers_per_cluster=2, readers=1)
  call check(ierr, "juxmem_array_create(day3)")

  do cycle = 0, cycles - 1
    call juxmem_array_acquire_read(day2, JUXMEM_EXACTLY, int(cycle + 1, c_int64_t), ierr, &
      timeout=WAIT, version_out=version)
    call check(ierr, "juxmem_array_acquire_read(day2)")
    call juxmem_array_local_read(day2, field, ierr)
    call check(ierr, "juxmem_array_local_read(day2)")
    part = field
    call juxmem_array_release_read(day2, ierr)
    call check(ierr, "juxmem_array_release_read(day2)")

    lcols = size(part, 1)
    lrows = size(part, 2)
    do r0 = 0, lrows - 1, TILE
      do c0 = 0, lcols - 1, TILE
        h = min(TILE, lrows - r0)
        w = min(TILE, lcols - c0)
        call tile_update(part, r0, c0, h, w)
      end do
    end do

    ! The whole local part is written: nothing to load.
    call juxmem_array_acquire_overwrite(day3, ierr, timeout=WAIT)
    call check(ierr, "juxmem_array_acquire_overwrite(day3)")
    call juxmem_array_local_write(day3, field, ierr)
    call check(ierr, "juxmem_array_local_write(day3)")
    field = part
    call juxmem_array_release(day3, ierr, version=released)
    call check(ierr, "juxmem_array_release(day3)")
    if (rank == 0) then
      print '(a,i0,a,i0,a,i0)', 'stage 3 (Fortran) cycle ', cycle, ': day 2 version ', version, &
        ' received, day 3 released as version ', released
      flush (6)
    end if
  end do

  call juxmem_array_close(day2)
  call juxmem_array_close(day3)
  call juxmem_layout_free(tiles)
  call juxmem_finalize(ctx, ierr)
  call check(ierr, "juxmem_finalize")
  call MPI_Finalize(ierr)

contains

  subroutine check(status, what)
    integer, intent(in) :: status
    character(len=*), intent(in) :: what
    integer :: e
    if (status /= JUXMEM_OK) then
      print '(a,a,i0,a,a)', what, ' failed: status ', status, ': ', juxmem_error_message()
      call MPI_Abort(MPI_COMM_WORLD, 1, e)
    end if
  end subroutine

  ! The weight of the 1-D smoother of size n at (i, j), 0-based (rows sum to 1).
  function smoother(n) result(s)
    integer, intent(in) :: n
    real(c_double) :: s(0:n - 1, 0:n - 1)
    real(c_double), parameter :: weights(0:2) = [0.5_c_double, 0.2_c_double, 0.05_c_double]
    real(c_double) :: wsum
    integer :: i, j, d
    do i = 0, n - 1
      wsum = 0.0_c_double
      do j = 0, n - 1
        d = abs(i - j)
        if (d <= 2) then
          s(i, j) = weights(d)
        else
          s(i, j) = 0.0_c_double
        end if
        wsum = wsum + s(i, j)
      end do
      do j = 0, n - 1
        s(i, j) = s(i, j) / wsum
      end do
    end do
  end function

  ! T <- S_r T S_c^T on the tile of h rows and w columns whose first local row is r0 and first
  ! local column c0 (0-based). Element (i, k) of the tile is part(c0 + k + 1, r0 + i + 1).
  subroutine tile_update(p, r0, c0, h, w)
    real(c_double), intent(inout) :: p(:, :)
    integer, intent(in) :: r0, c0, h, w
    real(c_double) :: sr(0:h - 1, 0:h - 1), sc(0:w - 1, 0:w - 1), tmp(0:h - 1, 0:w - 1), acc
    integer :: i, j, k
    sr = smoother(h)
    sc = smoother(w)
    do i = 0, h - 1
      do j = 0, w - 1
        acc = 0.0_c_double
        do k = 0, w - 1
          acc = acc + p(c0 + k + 1, r0 + i + 1) * sc(j, k)
        end do
        tmp(i, j) = acc
      end do
    end do
    do i = 0, h - 1
      do j = 0, w - 1
        acc = 0.0_c_double
        do k = 0, h - 1
          acc = acc + sr(i, k) * tmp(k, j)
        end do
        p(c0 + j + 1, r0 + i + 1) = acc
      end do
    end do
  end subroutine

end program weather_stage3
