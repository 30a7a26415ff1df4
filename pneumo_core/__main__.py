from pneumo_core.cli import main

raise SystemExit(main())
