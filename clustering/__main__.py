from clustering.cli import main

raise SystemExit(main())
